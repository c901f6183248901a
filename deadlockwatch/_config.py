"""Settings: declared once, validated the same way from every source.

A `Config` is built from the defaults, then the environment, then explicit
arguments; every value is checked by its option's parser, and a bad one
raises `ConfigError` naming the source, the value and what is accepted.

Read at every start-up with ``DEADLOCKWATCH`` set, so it imports nothing but
``os`` (no dataclasses, which imports inspect, nor typing).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

ENV_PREFIX = "DEADLOCKWATCH"
ACTIONS = ("report", "raise", "raise-all", "abort")
#: Exit status of a process stopped by ``on_deadlock="abort"``.
ABORT_EXIT_STATUS = 86

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """A setting has a value deadlockwatch cannot accept."""


def _bad(source: str, value: object, accepted: str) -> ConfigError:
    return ConfigError(f"deadlockwatch: invalid value {value!r} for {source}: expected {accepted}")


def parse_bool(value: object, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(source, value, "one of 1, 0, true, false, yes, no, on, off")


def _seconds(minimum: float, inclusive: bool) -> Callable[[object, str], float]:
    relation = ">=" if inclusive else ">"
    accepted = f"a number of seconds {relation} {minimum:g} and at most 3600"

    def parse(value: object, source: str) -> float:
        if isinstance(value, bool):
            raise _bad(source, value, accepted)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _bad(source, value, accepted) from None
        ok = number >= minimum if inclusive else number > minimum
        if not ok or number != number or number > 3600:  # NaN; inf > 3600
            raise _bad(source, value, accepted)
        return number

    return parse


def parse_action(value: object, source: str) -> str | Callable[[Any], object]:
    if callable(value) and not isinstance(value, str):
        return value
    if isinstance(value, str) and value.strip().lower() in ACTIONS:
        return value.strip().lower()
    accepted = "one of " + ", ".join(ACTIONS)
    if not source.startswith("environment"):
        accepted += ", or a callable that takes the finding"
    raise _bad(source, value, accepted)


def parse_path(value: object, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _bad(source, value, "a file path")
    if value == "":
        return None
    directory = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(directory):
        raise _bad(
            source, value, f"a file path in an existing directory ({directory!r} does not exist)"
        )
    if os.path.isdir(value):
        raise _bad(source, value, "a file path, not a directory")
    return value


def parse_suppress(value: object, source: str) -> tuple[str, ...]:
    accepted = (
        "entries of the form 'path/to/file.py:LINE' or 'package.module:function' "
        "(a list, or comma-separated text)"
    )
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise _bad(source, value, accepted)
    for item in items:
        left, colon, right = item.rpartition(":")
        if not colon or not left or not right or not (right.isdigit() or right.isidentifier()):
            raise _bad(source, value, accepted)
    return tuple(items)


class Option:
    """One setting: its `enable()` name, environment variable, parser and help.

    The runner's flag is ``--NAME`` and pytest's ``--deadlockwatch-NAME`` (with
    ``-`` for ``_``); pytest's ini key is ``deadlockwatch_NAME``.
    """

    __slots__ = ("alias", "env", "help", "name", "parse")

    def __init__(
        self,
        name: str,
        env: str,
        parse: Callable[[object, str], Any],
        help: str,
        alias: str = "",
    ) -> None:
        self.name = name
        self.env = env
        self.parse = parse
        self.help = help
        #: The name on the command line and in ini files, when not ``name``.
        self.alias = alias

    def __repr__(self) -> str:
        return f"Option({self.name!r}, {self.env!r})"

    @property
    def _cli(self) -> str:
        return self.alias or self.name

    @property
    def flag(self) -> str:
        return "--" + self._cli.replace("_", "-")

    @property
    def pytest_flag(self) -> str:
        return "--deadlockwatch-" + self._cli.replace("_", "-")

    @property
    def ini(self) -> str:
        return "deadlockwatch_" + self._cli


OPTIONS: tuple[Option, ...] = (
    Option(
        "interval",
        "DEADLOCKWATCH_INTERVAL",
        _seconds(0.001, True),
        "seconds between two looks of the watcher",
    ),
    Option(
        "threshold",
        "DEADLOCKWATCH_THRESHOLD",
        _seconds(0.0, True),
        "seconds a thread must have been blocked before the watcher analyses",
    ),
    Option(
        "on_deadlock",
        "DEADLOCKWATCH_ACTION",
        parse_action,
        "what to do on a deadlock: report; raise (DeadlockError in the thread that closed "
        "the cycle); raise-all (DeadlockError in every deadlocked thread); abort (report, "
        "then exit with status 86); or a callable taking the finding (enable() only)",
        alias="action",
    ),
    Option(
        "probable_after",
        "DEADLOCKWATCH_PROBABLE_AFTER",
        _seconds(0.0, True),
        "seconds threads must have been stuck before a probable deadlock is reported (what "
        "they wait for is reachable only through a global that no running thread names)",
    ),
    Option(
        "report",
        "DEADLOCKWATCH_REPORT",
        parse_path,
        "also append each finding as one JSON line to this file",
    ),
    Option(
        "lock_order",
        "DEADLOCKWATCH_LOCK_ORDER",
        parse_bool,
        "detect potential deadlocks: locks taken in inconsistent orders (lock-order inversions)",
    ),
    Option(
        "suppress",
        "DEADLOCKWATCH_SUPPRESS",
        parse_suppress,
        "lock-order findings to ignore, by creation or acquisition site ('pkg/mod.py:42') "
        "or function ('pkg.mod:func'); comma-separated in the environment and ini",
    ),
    Option(
        "text",
        "DEADLOCKWATCH_TEXT",
        parse_bool,
        "write the text report of each finding to standard error",
    ),
)
_BY_NAME = {o.name: o for o in OPTIONS}
ENABLE_VAR = ENV_PREFIX
#: Set by deadlockwatch itself for child processes (see `_shared`), not an option.
RUN_DIR_VAR = f"{ENV_PREFIX}_RUN_DIR"


def run_dir_name() -> str:
    """A new, unguessable name for a run directory (in the temporary directory,
    as `tempfile` would choose it from ``TMPDIR``, ``TEMP`` or ``TMP``): what
    start-up puts in ``RUN_DIR_VAR`` for the process tree.  The directory is
    made (mode ``0700``) by the first process that needs it (`_shared`)."""
    base = ""
    for var in ("TMPDIR", "TEMP", "TMP"):
        base = os.environ.get(var, "")
        if base:
            break
    if not base:
        base = "/tmp" if os.name == "posix" else os.getcwd()
    return os.path.join(base, f"deadlockwatch-{os.getpid()}-{os.urandom(8).hex()}")


#: Read once, when deadlockwatch is imported: 1 runs the tracked Lock's and
#: RLock's hot path in Python even where the C one (``_speedups``) is built.
PURE_VAR = f"{ENV_PREFIX}_PURE"
KNOWN_ENV = frozenset({ENABLE_VAR, RUN_DIR_VAR, PURE_VAR, *(o.env for o in OPTIONS)})


class Config:
    """The detector's settings; see `OPTIONS` for each one's meaning.

    Immutable, compared by value; `replace` makes a changed copy.  (A plain
    class, not a dataclass: this module is imported at start-up.)
    """

    interval: float
    threshold: float
    probable_after: float
    on_deadlock: str | Callable[[Any], object]
    report: str | None
    text: bool
    lock_order: bool
    suppress: tuple[str, ...]

    _DEFAULTS: tuple[tuple[str, object], ...] = (
        ("interval", 0.1),
        ("threshold", 0.1),
        ("probable_after", 5.0),
        ("on_deadlock", "report"),
        ("report", None),
        ("text", True),
        ("lock_order", True),
        ("suppress", ()),
    )
    __slots__ = tuple(name for name, _ in _DEFAULTS)

    def __init__(self, **values: Any) -> None:
        for name, default in self._DEFAULTS:
            object.__setattr__(self, name, values.pop(name, default))
        if values:
            raise TypeError(f"Config() got unexpected arguments {sorted(values)}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name, _ in self._DEFAULTS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Config)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name, _ in self._DEFAULTS)
        return f"Config({fields})"

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` (field values, not checked: see `with_options`)."""
        values = {name: getattr(self, name) for name, _ in self._DEFAULTS}
        values.update(changes)
        return Config(**values)

    def with_options(self, options: Mapping[str, object], source: str) -> Config:
        """A copy with ``options`` applied; ``source`` names where they come from,
        e.g. ``"enable({name}=...)"`` (``{name}`` is filled per option)."""
        changes: dict[str, Any] = {}
        for name, value in options.items():
            option = _BY_NAME.get(name)
            if option is None:
                known = ", ".join(o.name for o in OPTIONS)
                where = source.format(name=name)
                raise TypeError(
                    f"deadlockwatch: unknown option {name!r} for {where}; accepted: {known}"
                )
            changes[name] = option.parse(value, source.format(name=name))
        return self.replace(**changes)

    def with_environ(self, environ: Mapping[str, str]) -> Config:
        changes = {o.name: environ[o.env] for o in OPTIONS if environ.get(o.env, "") != ""}
        cfg = self
        for name, value in changes.items():
            cfg = cfg.with_options({name: value}, f"environment variable {_BY_NAME[name].env}")
        return cfg


def env_enabled(environ: Mapping[str, str]) -> bool:
    return parse_bool(environ.get(ENABLE_VAR, ""), f"environment variable {ENABLE_VAR}")


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """``DEADLOCKWATCH_*`` variables nobody reads (most likely typos)."""
    return sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in KNOWN_ENV)


_warned_env = False


def warn_unknown_env(environ: Mapping[str, str], write: Callable[[str], object]) -> None:
    """Warn once per process about each unknown ``DEADLOCKWATCH_*`` variable."""
    global _warned_env
    if _warned_env:
        return
    _warned_env = True
    for name in unknown_env(environ):
        write(
            f"deadlockwatch: warning: unknown environment variable {name} is ignored"
            " (see the options table in README)\n"
        )
