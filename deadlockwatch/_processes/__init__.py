"""The multiprocessing extension: deadlocks across processes.

- `shared`: tracked ``multiprocessing`` SemLocks, the run directory where
  processes publish what they hold and wait for, the merge of every process's
  snapshot and the cross-process confirmation; the watcher calls it at each
  tick (it imports nothing of the watcher).
- `ledger`: each process's record of the shared locks it holds, readable
  after it died.
"""
