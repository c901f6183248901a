"""The command line.

    python -m deadlockwatch [OPTIONS] script.py [ARGS...]
    python -m deadlockwatch [OPTIONS] -m package.module [ARGS...]
    python -m deadlockwatch demo [NAME]
    python -m deadlockwatch report FILE.jsonl [--format text|json|dot|svg] [-o OUT]

Errors in what was asked (bad options, unreadable reports) print one line and
exit with status 2.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import traceback
from collections.abc import Sequence

from deadlockwatch._config import ACTIONS, OPTIONS, Config, ConfigError

USAGE = """\
usage: python -m deadlockwatch [OPTIONS] script.py [ARGS...]
       python -m deadlockwatch [OPTIONS] -m package.module [ARGS...]
       python -m deadlockwatch demo [NAME]
       python -m deadlockwatch report FILE.jsonl [--format text|json|dot|svg] [-o OUT]

Run a Python program with deadlockwatch on from its first line, show the
built-in demo deadlocks, or render a saved JSON Lines report.

options (also DEADLOCKWATCH_* environment variables, see README):
"""

_BY_FLAG = {o.flag: o for o in OPTIONS}


class UsageError(Exception):
    """A command line that cannot be run."""


def _help() -> str:
    lines = [USAGE]
    for o in OPTIONS:
        lines.append(f"  {o.flag} VALUE\n      {o.help} ({o.env})")
    lines.append("  -h, --help\n      show this help")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "demo":
            return _demo(args[1:])
        if args and args[0] == "report":
            return _report(args[1:])
        return _run(args)
    except (UsageError, ConfigError) as exc:
        text = str(exc)
        prefix = "" if text.startswith("deadlockwatch") else "deadlockwatch: "
        print(f"{prefix}{text}", file=sys.stderr)
        return 2


# -- run a program ---------------------------------------------------------------
def _parse_run(args: list[str]) -> tuple[Config, dict[str, str], str | None, list[str]]:
    """Options, then ``-m module`` or a script; returns the config, the environment
    to hand down to child processes, the module (or None) and the program's argv."""
    config = Config().with_environ(os.environ)
    env: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(_help())
            raise SystemExit(0)
        if arg == "-m":
            if i + 1 >= len(args):
                raise UsageError("-m needs a module name, e.g. -m package.module")
            return config, env, args[i + 1], args[i + 2 :]
        if arg.startswith("-"):
            flag, eq, value = arg.partition("=")
            option = _BY_FLAG.get(flag)
            if option is None:
                known = ", ".join(_BY_FLAG)
                raise UsageError(f"unknown option {flag!r}; accepted: {known}, -m, --help")
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"option {flag} needs a value")
                i += 1
                value = args[i]
            source = f"command-line option {flag}"
            if option.name == "on_deadlock" and value.strip().lower() not in ACTIONS:
                # Config would also offer "a callable", which no command line can pass.
                raise ConfigError(
                    f"deadlockwatch: invalid value {value!r} for {source}: "
                    f"expected one of {', '.join(ACTIONS)}"
                )
            config = config.with_options({option.name: value}, source)
            if option.name == "report" and value:
                # The program or its children may change directory.
                value = os.path.abspath(value)
                config = config.replace(report=value)
            env[option.env] = value
            i += 1
            continue
        return config, env, None, args[i:]
    raise UsageError("nothing to run: give a script or -m module (see --help)")


def _run(args: list[str]) -> int:
    import runpy

    from deadlockwatch._config import warn_unknown_env

    config, env, module, argv = _parse_run(args)
    if module is None:
        if not os.path.exists(argv[0]):
            raise UsageError(f"can't open file {argv[0]!r}: no such file")
        if not os.path.isfile(argv[0]):
            raise UsageError(f"can't run {argv[0]!r}: not a file (give a Python script)")
    # Child Python processes start with the detector on, with the same options,
    # and share one run directory (named now, before the program runs).
    from deadlockwatch._config import RUN_DIR_VAR, run_dir_name

    if not os.environ.get(RUN_DIR_VAR):
        env[RUN_DIR_VAR] = run_dir_name()
    os.environ.update({"DEADLOCKWATCH": "1", **env})
    from deadlockwatch._api import start

    warn_unknown_env(os.environ, sys.stderr.write)
    start(config)
    try:
        if module is not None:
            sys.argv = [module, *argv]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except ImportError as exc:
        if module is not None and _only_runner_frames(exc):
            # runpy could not find or run the module itself (not an import in it).
            raise UsageError(f"can't run -m {module}: {exc}") from None
        _print_program_error(exc)
        return 1
    except SystemExit:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        _print_program_error(exc)
        return 1
    return 0


def _is_runner_frame(filename: str) -> bool:
    here = os.path.dirname(os.path.abspath(__file__))
    runpy_file = sys.modules["runpy"].__file__ or ""
    return filename.startswith(here) or filename in (runpy_file, "<frozen runpy>")


def _only_runner_frames(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if not _is_runner_frame(tb.tb_frame.f_code.co_filename):
            return False
        tb = tb.tb_next
    return True


def _print_program_error(exc: BaseException) -> None:
    """The traceback as Python would print it, without the runner's own frames."""
    tb = exc.__traceback__
    while tb is not None and _is_runner_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    sys.stderr.write("".join(traceback.format_exception(type(exc), exc, tb)))


# -- demo ------------------------------------------------------------------------
LOCK_ORDER_DEMOS = frozenset({"inversion", "wait-under-lock"})


def _demo(args: list[str]) -> int:
    from deadlockwatch import _api
    from deadlockwatch._demo import RAISE_ALL, SCENARIOS

    parser = _ArgParser(prog="python -m deadlockwatch demo", description="Run built-in deadlocks.")
    parser.add_argument("name", nargs="?", choices=sorted(SCENARIOS), help="default: all")
    ns = parser.parse_args(args)
    names = [ns.name] if ns.name else list(SCENARIOS)
    with _api.watching(on_deadlock="raise", text=True):
        for n in names:
            scenario = SCENARIOS[n]
            # One report per scenario: lock order only where it is the point
            # (a real ABBA is also an inversion, reported as it forms).
            action = "raise-all" if n in RAISE_ALL else "raise"
            _api.enable(on_deadlock=action, text=True, lock_order=n in LOCK_ORDER_DEMOS)
            _api.forget()
            print(f"=== {n}: {' '.join((scenario.__doc__ or '').split())}", flush=True)
            try:
                outcome = scenario()
            except RuntimeError as exc:
                print(f"deadlockwatch demo: {n}: {exc}", file=sys.stderr)
                return 1
            sys.stderr.flush()
            for line in outcome:
                print(f"    {line}", flush=True)
    return 0


# -- report ----------------------------------------------------------------------
_FORMATS = ("text", "json", "dot", "svg")


def _report(args: list[str]) -> int:
    from deadlockwatch._report.dot import GraphvizMissing, to_dot, to_svg
    from deadlockwatch._report.load import ReportError, load_findings
    from deadlockwatch._report.text import format_text, to_json_line

    parser = _ArgParser(
        prog="python -m deadlockwatch report",
        description="Render findings saved with DEADLOCKWATCH_REPORT.",
    )
    parser.add_argument("file", help="a JSON Lines report file")
    parser.add_argument("--format", default="text", help="text (default), json, dot or svg")
    parser.add_argument("-o", "--output", help="write here instead of standard output")
    ns = parser.parse_args(args)
    if ns.format not in _FORMATS:
        raise UsageError(
            f"unknown format {ns.format!r} for --format: expected one of {', '.join(_FORMATS)}"
        )
    skipped: list[str] = []
    try:
        findings = load_findings(ns.file, skipped)
    except ReportError as exc:
        raise UsageError(f"report: {exc}") from None
    for line in skipped:
        sys.stderr.write(f"deadlockwatch: report: {line}\n")
    if ns.format == "text":
        # One after the other, exactly as the detector printed them.
        out = "".join(format_text(f) for f in findings)
    elif ns.format == "json":
        out = "".join(to_json_line(f) for f in findings)
    else:
        out = to_dot(findings)
        if ns.format == "svg":
            try:
                out = to_svg(out)
            except GraphvizMissing as exc:
                raise UsageError(f"report: {exc}") from None
    # Names in a report may hold anything a str can (lone surrogates included):
    # escape what the output encoding cannot take rather than fail.
    if ns.output:
        try:
            with open(ns.output, "w", encoding="utf-8", errors="backslashreplace") as f:
                f.write(out)
        except OSError as exc:
            raise UsageError(f"report: cannot write {ns.output}: {exc.strerror}") from None
        return 0
    try:
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(errors="backslashreplace")
        sys.stdout.write(out)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, like other tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return 0


class _ArgParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and status 2 through `main`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")
