"""What runs in the application's threads: tracking.

Everything here may run inside an application thread, under its locks, so it
is short, never blocks on anything the application can hold, and never calls
into the watcher.

- `native`: the untracked originals (``_thread``'s lock, ``start_new_thread``,
  ``monotonic``), captured before any patch; the watcher uses only these.
- `state`: per-thread records (what a thread holds, the wait it is blocked
  in), sliced waits (`wait_until`; `wait_lock`, written out for a Condition's
  waiter lock) and `deliver` (errors for victims), sites
  (`Site` everywhere, the hot path's `RawSite` made one by `site_at`), the
  `Tracked` protocol the watcher reads from a tracked primitive.
- `primitives`: tracked Lock, RLock, Semaphore, BoundedSemaphore (Python
  path); `_speedups.c` is the C core of Lock and RLock (and of Condition's
  calls of its lock, which `waits` installs while enabled).
- `waits`: the wrappers of ``Condition.wait``, ``Thread.join`` and the
  executor's futures, which register a wait when one blocks, and
  Condition's ``__enter__``/``__exit__``/``_release_save``/
  ``_acquire_restore``/``_is_owned`` in C where the C core runs;
- `meaning`: what a blocked ``Condition.wait`` stands for (an Event, a
  queue, a future...), read from the waiting thread's frames when first
  asked (`ConditionWait`);
- `views`: how the watcher sees such a wait's object (the `Tracked` protocol).
- `aio`: asyncio (once the program imports it): the owner task of an
  ``asyncio.Lock``, what each suspended task awaits, the running loops.
- `order`: lock-order learning (potential deadlocks that did not happen).
- `patch`, `hook`, `wrapping`: installing and removing every patch (lock
  factories, wait wrappers), the
  import hook that patches modules as the program imports them, and wrapt.
"""
