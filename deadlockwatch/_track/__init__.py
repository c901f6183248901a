"""What runs in the application's threads: tracking.

Everything here may run inside an application thread, under its locks, so it
is short, never blocks on anything the application can hold, and never calls
into the watcher.

- `native`: the untracked originals (``_thread``'s lock, ``start_new_thread``,
  ``monotonic``), captured before any patch; the watcher uses only these.
- `state`: per-thread records (what a thread holds, the wait it is blocked
  in), sliced waits (`wait_until`) and `deliver` (errors for victims), raw
  sites (`Where`) and their resolution, the `Tracked` protocol the watcher
  reads from a tracked primitive.
- `primitives`: tracked Lock, RLock, Semaphore, BoundedSemaphore (Python
  path); `_speedups.c` is the C core of Lock and RLock.
- `waits`: what a blocked Condition, Event, queue, Barrier, join or future
  wait means, and the wrappers that register those waits.
- `order`: lock-order learning (potential deadlocks that did not happen).
- `patch`, `hook`, `wrapping`: installing and removing every patch, the
  import hook that patches modules as the program imports them, and wrapt.
"""
