"""The watcher: a background thread that looks at blocked threads.

- `watcher`: the detector (`DETECTOR`): start and stop, the tick, the
  confirmation of a finding over ticks, and the one action policy
  (`handle`: record, report, raise/raise-all/abort/callback).
- `capture`: a snapshot of the blocked threads and what they hold and wait
  for, read from the records `_track` keeps; stacks are taken here and handed
  to the analysis.
- `reach`, `liveness`: who can still signal: a walk of the heap backwards from
  a signal object to the frames that reach it, and bytecode liveness of those
  frames' locals.
- `tasks`: asyncio tasks as nodes of the same graph, read from the loop's
  queues and each task's ``_fut_waiter`` and coroutine chain (never by
  running code on the loop); who can give an asyncio signal.
"""
