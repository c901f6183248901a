"""deadlockwatch's benchmark suite: ``python -m benchmarks [--quick] [--json OUT]``.

See benchmarks/README.md.
"""
