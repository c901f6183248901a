"""Findings out and back in: text, JSON (written and read with one schema) and
DOT.

- `text`: the human report, the JSON record, the dump of every thread.
- `load`: reading JSON reports back (``deadlockwatch report``).
- `dot`: Graphviz output.
"""
