"""`Snap`: builds a `Snapshot` by hand from a few declarative calls, for the
analysis tests (``analysis/``) and the watcher's (``watch/test_reach.py``):
resources first (``lock``/``pool``), then threads that hold some of them and
may wait for one.  Holders and free units of every resource are derived from
what the threads hold, so a snapshot is consistent unless a test says
otherwise (``free=``)."""

from __future__ import annotations

from collections.abc import Iterable

from deadlockwatch._model import (
    HeldInfo,
    ResourceInfo,
    Site,
    Snapshot,
    ThreadInfo,
    WaitInfo,
)


class Snap:
    """A concise way to write a snapshot.

    Resource keys start at 100, thread keys at 1; a thread's ident is 1000 +
    its key and its wait token 5000 + its key, so tests can predict them.
    """

    def __init__(self) -> None:
        self._res: dict[int, dict[str, object]] = {}
        self._threads: dict[int, dict[str, object]] = {}
        self.names: dict[str, int] = {}

    # resources
    def lock(
        self,
        *,
        type: str = "Lock",
        units: int = 1,
        owner_bound: bool = True,
        line: int | None = None,
        file: str = "app.py",
        free: int | None = None,
        site: bool = True,
    ) -> int:
        key = 100 + len(self._res)
        self._res[key] = {
            "type": type,
            "units": units,
            "owner_bound": owner_bound,
            "created_at": Site(file, line if line is not None else key, "main") if site else None,
            "free": free,
        }
        return key

    def pool(self, units: int, **kw: object) -> int:
        return self.lock(type="Semaphore", units=units, **kw)  # type: ignore[arg-type]

    # threads
    def thread(
        self,
        name: str,
        *,
        holds: Iterable[int | tuple[int, int]] = (),
        waits: int | None = None,
        timeout: float | None = None,
        alive: bool = True,
        blocked_for: float | None = None,
        daemon: bool = False,
    ) -> int:
        key = 1 + len(self._threads)
        held = [(h, 1) if isinstance(h, int) else h for h in holds]
        self._threads[key] = {
            "name": name,
            "held": held,
            "waits": waits,
            "timeout": timeout,
            "alive": alive,
            "blocked_for": blocked_for if blocked_for is not None else 10.0 - key * 0.1,
            "daemon": daemon,
        }
        self.names[name] = key
        return key

    def build(self, *, others_running: bool = False) -> Snapshot:
        holders: dict[int, list[tuple[int, int]]] = {k: [] for k in self._res}
        for tk, t in self._threads.items():
            for rk, n in t["held"]:  # type: ignore[attr-defined]
                holders[rk].append((tk, n))
        resources = {}
        for rk, r in self._res.items():
            used = sum(n for _, n in holders[rk])
            free = r["free"] if r["free"] is not None else max(0, r["units"] - used)  # type: ignore[operator]
            resources[rk] = ResourceInfo(
                key=rk,
                id=hex(0x7F0000 + rk),
                type=r["type"],  # type: ignore[arg-type]
                created_at=r["created_at"],  # type: ignore[arg-type]
                holders=tuple(holders[rk]),
                free=free,  # type: ignore[arg-type]
                owner_bound=r["owner_bound"],  # type: ignore[arg-type]
            )
        threads = {}
        for tk, t in self._threads.items():
            wait = None
            if t["waits"] is not None:
                wait = WaitInfo(
                    resource=t["waits"],  # type: ignore[arg-type]
                    blocked_for=t["blocked_for"],  # type: ignore[arg-type]
                    timeout=t["timeout"],  # type: ignore[arg-type]
                    site=Site("app.py", 500 + tk, f"work_{tk}"),
                    token=5000 + tk,
                )
            threads[tk] = ThreadInfo(
                key=tk,
                ident=1000 + tk,
                name=t["name"],  # type: ignore[arg-type]
                daemon=t["daemon"],  # type: ignore[arg-type]
                alive=t["alive"],  # type: ignore[arg-type]
                wait=wait,
                held=tuple(
                    HeldInfo(rk, n, Site("app.py", 300 + rk, f"work_{tk}"))
                    for rk, n in t["held"]  # type: ignore[attr-defined]
                ),
            )
        return Snapshot(threads=threads, resources=resources, others_running=others_running)
