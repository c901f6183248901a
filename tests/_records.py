"""Report records for the tests of the report stage (``report/``) and of the
``report`` command (``surfaces/test_cli.py``): records as the detector writes
them, and hypothesis strategies that damage them."""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from deadlockwatch._model import Finding
from deadlockwatch._report.dot import to_dot
from deadlockwatch._report.load import finding_from_json
from deadlockwatch._report.text import format_text, to_json_line

#: Records as the detector writes them (stacks shortened): a Lock cycle and a
#: semaphore whose every unit is held by a thread waiting for another.
REAL_RECORDS: list[dict[str, Any]] = [
    {
        "kind": "deadlock",
        "cause": "2 threads each wait for a resource held by the next",
        "pid": 28909,
        "time": 1795544810.3987224,
        "threads": ["worker-2", "worker-1"],
        "cycle": [
            {
                "thread": "worker-2",
                "waits_for": "0x7f147e31a440",
                "held_by": "worker-1",
                "holders": ["worker-1"],
            },
            {
                "thread": "worker-1",
                "waits_for": "0x7f147d392620",
                "held_by": "worker-2",
                "holders": ["worker-2"],
            },
        ],
        "conditions": {
            "mutual_exclusion": True,
            "hold_and_wait": True,
            "no_preemption": True,
            "circular_wait": True,
        },
        "reasons": {
            "mutual_exclusion": "no resource in the cycle has a free unit",
            "hold_and_wait": "every thread in the cycle holds a resource while it waits",
            "no_preemption": "no wait has a timeout, and only their holders can release these "
            "resources",
            "circular_wait": "'worker-2' -> 'worker-1' -> 'worker-2'",
        },
        "resources": [
            {
                "id": "0x7f147d392620",
                "type": "Lock",
                "created_at": {"file": "/srv/app/abba.py", "line": 3, "function": "<module>"},
                "holders": {"worker-2": 1},
                "free": 0,
                "owner_bound": True,
            },
            {
                "id": "0x7f147e31a440",
                "type": "Lock",
                "created_at": {"file": "/srv/app/abba.py", "line": 2, "function": "<module>"},
                "holders": {"worker-1": 1},
                "free": 0,
                "owner_bound": True,
            },
        ],
        "thread_details": [
            {
                "name": "worker-2",
                "ident": 139725889337024,
                "daemon": True,
                "alive": True,
                "waits_for": {
                    "resource": "0x7f147e31a440",
                    "blocked_for": 0.17673,
                    "timeout": None,
                    "at": {"file": "/srv/app/abba.py", "line": 8, "function": "worker"},
                },
                "holds": [
                    {
                        "resource": "0x7f147d392620",
                        "count": 1,
                        "acquired_at": {
                            "file": "/srv/app/abba.py",
                            "line": 6,
                            "function": "worker",
                        },
                    }
                ],
            },
            {
                "name": "worker-1",
                "ident": 139725968295616,
                "daemon": True,
                "alive": True,
                "waits_for": {
                    "resource": "0x7f147d392620",
                    "blocked_for": 0.176697,
                    "timeout": None,
                    "at": {"file": "/srv/app/abba.py", "line": 8, "function": "worker"},
                },
                "holds": [
                    {
                        "resource": "0x7f147e31a440",
                        "count": 1,
                        "acquired_at": {
                            "file": "/srv/app/abba.py",
                            "line": 6,
                            "function": "worker",
                        },
                    }
                ],
            },
        ],
        "stacks": {
            "worker-2": [
                {
                    "file": "/usr/lib/python3.11/threading.py",
                    "line": 982,
                    "function": "run",
                    "code": "self._target(*self._args, **self._kwargs)",
                },
                {"file": "/srv/app/abba.py", "line": 8, "function": "worker", "code": "with y:"},
            ],
            "worker-1": [
                {
                    "file": "/usr/lib/python3.11/threading.py",
                    "line": 982,
                    "function": "run",
                    "code": "self._target(*self._args, **self._kwargs)",
                },
                {"file": "/srv/app/abba.py", "line": 8, "function": "worker", "code": "with y:"},
            ],
        },
    },
    {
        "kind": "deadlock",
        "cause": "every unit of BoundedSemaphore(created /srv/app/pool.py:95) is held by "
        "'worker-0', 'worker-1' and 'worker-2', and each waits for another",
        "pid": 1415,
        "time": 1795544986.6275632,
        "threads": ["worker-2", "worker-1", "worker-0"],
        "cycle": [
            {
                "thread": f"worker-{i}",
                "waits_for": "0x7f43923aa390",
                "held_by": f"worker-{(i - 1) % 3}",
                "holders": ["worker-0", "worker-1", "worker-2"],
            }
            for i in (2, 1, 0)
        ],
        "conditions": {
            "mutual_exclusion": True,
            "hold_and_wait": True,
            "no_preemption": True,
            "circular_wait": True,
        },
        "reasons": {
            "mutual_exclusion": "no resource in the cycle has a free unit",
            "hold_and_wait": "every thread in the cycle holds a resource while it waits",
            "no_preemption": "no wait has a timeout, and only their holders can release these "
            "resources",
            "circular_wait": "'worker-2' -> 'worker-1' -> 'worker-0' -> 'worker-2'",
        },
        "resources": [
            {
                "id": "0x7f43923aa390",
                "type": "BoundedSemaphore",
                "created_at": {
                    "file": "/srv/app/pool.py",
                    "line": 95,
                    "function": "pool_exhaustion",
                },
                "holders": {"worker-0": 1, "worker-1": 1, "worker-2": 1},
                "free": 0,
                "owner_bound": True,
            }
        ],
        "thread_details": [
            {
                "name": f"worker-{i}",
                "ident": 139928175662784 + i,
                "daemon": True,
                "alive": True,
                "waits_for": {
                    "resource": "0x7f43923aa390",
                    "blocked_for": 0.18772,
                    "timeout": 2.5 if i == 0 else None,
                    "at": {"file": "/srv/app/pool.py", "line": 101, "function": "work"},
                },
                "holds": [
                    {
                        "resource": "0x7f43923aa390",
                        "count": 1,
                        "acquired_at": {"file": "/srv/app/pool.py", "line": 99, "function": "work"},
                    }
                ],
            }
            for i in (2, 1, 0)
        ],
        "stacks": {
            f"worker-{i}": [
                {"file": "/srv/app/pool.py", "line": 23, "function": "run", "code": "fn()"},
                {"file": "/srv/app/pool.py", "line": 101, "function": "work", "code": "with pool:"},
            ]
            for i in (2, 1, 0)
        },
    },
]


_DELETE = object()


# -- property tests (in-process) ---------------------------------------------------------
#: Every key the schema uses, so that random objects often look like records.
SCHEMA_KEYS = sorted(
    {key for record in REAL_RECORDS for key in re.findall(r'"(\w+)":', json.dumps(record))}
)


DICT_KEYS = [*SCHEMA_KEYS, "worker-0", "worker-1", "worker-2"]


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["worker-1", "worker-2", "0x7f147d392620", "0x7f147e31a440", "deadlock"])
)


JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(DICT_KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=30,
)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _renders(finding: Finding) -> None:
    """What the ``report`` command does with a loaded finding never fails."""
    assert isinstance(finding, Finding)
    format_text(finding)
    to_dot([finding])
    record = json.loads(to_json_line(finding))
    finding_from_json(record)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value: dict keys and list indices."""
    found = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += _paths(value, (*prefix, i))
    return found


#: Values a damaged or hand-edited record may hold where the schema wants another.
EDGE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    10**30,
    0.5,
    1e300,
    -1e300,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "worker-1",
    "0x7f147d392620",
    [],
    [None],
    ["worker-1"],
    {},
    {"file": "f.py", "line": 1, "function": "g"},
]


JSON_OR_EDGE = st.sampled_from(EDGE_VALUES) | JSON_VALUES


@st.composite
def json_paths(draw: st.DrawFn, obj: Any) -> tuple[Any, ...]:
    """A place in ``obj``, chosen by walking down from the top (so that the
    record's own fields are picked as often as the leaves of its lists)."""
    path: tuple[Any, ...] = ()
    while isinstance(obj, (dict, list)) and obj:
        step = draw(st.sampled_from(list(obj) if isinstance(obj, dict) else range(len(obj))))
        path, obj = (*path, step), obj[step]
        if not isinstance(obj, (dict, list)) or not obj or draw(st.booleans()):
            break
    return path


def _damaged(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy with the value at ``path`` replaced (or deleted for `_DELETE`)."""
    record = copy.deepcopy(record)
    parent: Any = record
    for step in path[:-1]:
        parent = parent[step]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return record


@st.composite
def mutated_records(draw: st.DrawFn) -> dict[str, Any]:
    record = draw(st.sampled_from(REAL_RECORDS))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(json_paths(record))
        if not path:
            break
        record = _damaged(record, path, draw(st.just(_DELETE) | JSON_OR_EDGE))
    return record


REPORT_BYTES = (
    st.binary(max_size=300)
    # a real line cut anywhere, followed by anything (a writer killed mid-line)
    | st.builds(
        lambda line, cut, tail: line.encode()[:cut] + tail,
        st.sampled_from([json.dumps(r) + "\n" for r in REAL_RECORDS]),
        st.integers(0, 4000),
        st.binary(max_size=20),
    )
    # damaged records, one per line
    | st.lists(mutated_records(), min_size=1, max_size=3).map(
        lambda rs: "".join(json.dumps(r) + "\n" for r in rs).encode()
    )
    # valid JSON the decoder itself may choke on: deep nesting, huge numbers
    | st.builds(
        lambda unit, n, end: unit * n + end,
        st.sampled_from([b"[", b'{"a": [', b"1", b'{"pid": 1', b'{"time": 1']),
        st.integers(0, 6000),
        st.sampled_from([b"", b"\n", b"}\n", b", 0]\n"]),
    )
)
