"""The real-world projects of ``run.py``: pinned sdists, their test
dependencies and the pytest arguments of their own test suites.

Each entry: ``name`` (PyPI), ``version`` (pinned), ``deps`` (test dependencies,
pinned where a release changed the outcome), ``args`` (what follows
``python -m pytest`` in the unpacked sdist), ``timeout`` (seconds per run);
optional: ``true_findings`` (text that marks each of its findings shown true,
see README), ``slow`` (run only when named with ``--only``).
"""

from __future__ import annotations

from typing import Any

PROJECTS: list[dict[str, Any]] = [
    {
        "name": "readerwriterlock",
        "version": "1.0.10",
        "deps": ["pytest==8.3.4", "typing_extensions"],
        "args": ["tests/test_rwlock.py"],
        "timeout": 600,
    },
    {
        "name": "fasteners",
        "version": "0.20",
        "deps": ["pytest==8.3.4", "diskcache==5.6.3", "eventlet==0.41.3", "more_itertools"],
        "args": ["tests"],
        "timeout": 600,
    },
    {
        "name": "pebble",
        "version": "5.2.3",
        "deps": ["pytest==8.3.4"],
        "args": ["test"],
        "timeout": 900,
        # Its true findings (README, What it found in real projects): the
        # lock-order inversion between a Queue's mutex and waitforqueues's
        # Condition lock, and the RLock test_waitforthreads_spurious leaves held.
        "true_findings": [
            "Lock(created pebble/functions.py:37)",
            "exited holding RLock(created test/test_pebble.py:156)",
        ],
    },
    {
        "name": "janus",
        "version": "2.0.0",
        "deps": ["pytest==8.3.4", "pytest-asyncio==0.25.3", "pytest-cov"],
        # test_benchmarks.py needs pytest-codspeed's fixture: errors, plain or not.
        "args": ["tests", "--ignore=tests/test_benchmarks.py"],
        "timeout": 600,
    },
    {
        "name": "cachetools",
        "version": "8.0.3",
        "deps": ["pytest==8.3.4"],
        "args": ["tests"],
        "timeout": 300,
    },
    {
        "name": "tenacity",
        "version": "9.2.1",
        "deps": ["pytest==8.3.4", "tornado==6.4.2", "typeguard"],
        "args": ["tests"],
        "timeout": 300,
    },
    {
        "name": "APScheduler",
        "version": "3.11.3",
        "deps": [
            "pytest==8.3.4",
            "pytest-timeout",
            "anyio>=4.5.2",
            "pytz",
            "tornado==6.4.2",
            "sqlalchemy",
            "gevent",
        ],
        "args": ["tests"],
        "timeout": 900,
    },
    {
        "name": "tqdm",
        "version": "4.70.1",
        "deps": ["pytest==8.3.4", "pytest-timeout==2.4.0", "pytest-asyncio==0.25.3"],
        # Its monitor thread (TMonitor), thread_map and its write lock (an
        # RLock beside a multiprocessing one); perf tests are timing checks.
        "args": ["tests", "-k", "not perf"],
        "timeout": 600,
    },
    {
        "name": "pykka",
        "version": "4.5.0",
        "deps": ["pytest==8.3.5", "pytest-mock==3.14.0"],
        # Actors on threads: each actor a thread with its inbox queue, futures
        # on Events and queues, a registry under a lock.
        "args": ["tests"],
        "timeout": 600,
    },
    {
        "name": "watchdog",
        "version": "7.1.1",
        "deps": ["pytest==8.3.4", "pytest-timeout==2.4.0", "flaky==3.8.1"],
        "args": ["tests"],
        "timeout": 1800,
        # Its suite alone takes over 8 minutes here: run only when named.
        "slow": True,
    },
    {
        "name": "anyio",
        "version": "4.6.2",
        "deps": [
            "pytest==8.3.4",
            "trio==0.35.0",
            "exceptiongroup",
            "hypothesis",
            "psutil",
            "pytest-mock",
            "trustme",
            "truststore",
            "uvloop",
        ],
        # asyncio, uvloop and trio backends, worker threads (to_thread,
        # from_thread, blocking portals) and trio's guest mode in its test
        # runner (whose RLock must name _thread as its module).  Its
        # test_keyboardinterrupt_during_test gives a pytester subprocess 3
        # seconds: it timed out plain under load; its
        # test_thread_cancelled_and_abandoned[asyncio+uvloop] races (a worker
        # thread calls call_soon_threadsafe on a closed uvloop loop), failed
        # plain in one run of two; network tests need the internet.
        "args": [
            "tests",
            "-m",
            "not network",
            "-k",
            "not test_keyboardinterrupt_during_test and not test_thread_cancelled_and_abandoned",
        ],
        "timeout": 1200,
        "slow": True,
    },
    {
        "name": "filelock",
        "version": "3.16.1",
        "deps": [
            "pytest==8.3.4",
            "pytest-mock",
            "pytest-timeout",
            "pytest-asyncio==0.25.3",
            "virtualenv",
        ],
        # Its thread-local and thread-shared file locks, from many threads.
        "args": ["tests"],
        "timeout": 600,
    },
    {
        "name": "asgiref",
        "version": "3.13.0",
        "deps": ["pytest==8.3.4", "pytest-asyncio==0.25.3", "packaging"],
        # sync_to_async / async_to_sync: event loops in threads, a
        # thread-sensitive executor, Local across threads and tasks.
        "args": ["tests"],
        "timeout": 600,
    },
    {
        "name": "aiosqlite",
        "version": "0.22.1",
        "deps": ["pytest==8.3.4"],
        # A thread per connection; each call a future of the event loop that
        # the thread completes through call_soon_threadsafe (unittest's
        # IsolatedAsyncioTestCase).
        "args": ["aiosqlite/tests/smoke.py", "aiosqlite/tests/perf.py"],
        "timeout": 600,
    },
    {
        "name": "diskcache",
        "version": "5.6.3",
        "deps": ["pytest==8.3.4"],
        # SQLite-backed caches used from threads and processes, its recipes
        # (Lock, RLock, BoundedSemaphore, barrier, memoize_stampede: locks
        # kept in the cache); its Django backend (and the doctests, which import
        # it) need Django and a Django project.
        "args": [
            "tests",
            "--ignore=tests/test_djangocache.py",
            "--ignore=tests/test_doctest.py",
        ],
        "timeout": 900,
    },
    {
        "name": "cheroot",
        "version": "11.1.2",
        "deps": [
            "pytest==8.3.4",
            "pytest-mock",
            "pytest-rerunfailures",
            "jaraco.context",
            "jaraco.text",
            "portend",
            "pyopenssl",
            "pypytools",
            "requests",
            "requests-unixsocket",
            "requests-toolbelt",
            "trustme",
        ],
        # CherryPy's HTTP server: a worker thread pool fed by a queue, its
        # connection manager and selector; its in-tree pytest plugin comes
        # from its addopts, which run.py clears.  Its TLS tests hang plain
        # here (make_tls_http_server polls httpserver.ready for ever once the
        # server failed to start: test_ssl_adapters_with_private_key_password).
        "args": [
            "-p",
            "cheroot.test._pytest_plugin",
            "cheroot/test",
            "--ignore=cheroot/test/test_ssl.py",
        ],
        "timeout": 900,
    },
    {
        "name": "huey",
        "version": "3.5.4",
        "deps": ["pytest==8.3.4", "redis"],
        # A task queue: its consumer's worker threads (and processes), its
        # scheduler, result waits, MemoryStorage under a lock, SqliteHuey from
        # threads, its asyncio result helper; the Redis and PostgreSQL tests
        # skip without a server.
        "args": ["huey/tests"],
        "timeout": 900,
    },
    {
        "name": "portalocker",
        # 3.2 and later build with uv_build, which cannot be built from source
        # here (pip download --no-binary :all:).
        "version": "3.1.1",
        "deps": ["pytest==8.3.4", "pytest-timeout", "pytest-rerunfailures", "redis"],
        # File locks (Lock, RLock, BoundedSemaphore over lock files) from
        # threads and processes; its Redis lock needs a server.  Its
        # test_exclusive_processes is a race of its own (two pool workers must
        # overlap within a 50 ms hold, and a retried lock that succeeds fails
        # the test with a TypeError): without its reruns it failed 3 of 6
        # cases plain, and the reruns (1 s apart) made the time of the run.
        "args": [
            "portalocker_tests",
            "--ignore=portalocker_tests/test_redis.py",
            "-k",
            "not test_exclusive_processes",
        ],
        "timeout": 900,
    },
]
