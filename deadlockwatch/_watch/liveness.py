"""Which local variables of a frame can still be used: bytecode liveness.

A thread can use an object held in a local of one of its frames only if the
rest of that function may load the local again.  ``live_after(code, lasti)``
answers, for the instruction a frame is executing, with the set of local
names (fast locals, cells and free variables) that some path of the rest of
the function loads before storing to it or deleting it.

The answer errs on the side of "live": a jump or handler it cannot read
makes every local live, and so does, from where it stands, a way for the
function to see its own locals without loading them (``locals()``,
``vars()``, ``eval``, ``exec``, ``sys._getframe``) — except the ``locals()``
that pytest's rewritten asserts call, only to ask whether a name is local.
Results are cached per code object.
"""

from __future__ import annotations

import dis
import sys
from collections.abc import Iterable
from types import CodeType

#: Names whose call lets a function read its locals without loading them.
_INTROSPECTION = frozenset({"locals", "vars", "eval", "exec", "_getframe", "currentframe"})

_LOADS = frozenset(
    {
        "LOAD_FAST",
        "LOAD_FAST_CHECK",
        "LOAD_FAST_AND_CLEAR",
        "LOAD_FAST_BORROW",
        "LOAD_DEREF",
        "LOAD_CLOSURE",
        "LOAD_CLASSDEREF",
        "LOAD_FROM_DICT_OR_DEREF",
    }
)
_DOUBLE_LOADS = frozenset({"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})
#: Instructions that load a global, a builtin or an attribute by name: the
#: name is kept, prefixed with ".", among the locals (see `names_after`).
_NAME_LOADS = frozenset(
    {
        "LOAD_GLOBAL",
        "LOAD_NAME",
        "LOAD_ATTR",
        "LOAD_METHOD",
        "LOAD_FROM_DICT_OR_GLOBALS",
        "IMPORT_FROM",
    }
)
_STORES = frozenset({"STORE_FAST", "STORE_DEREF", "DELETE_FAST", "DELETE_DEREF"})
_NO_FALLTHROUGH = frozenset(
    {
        "JUMP_FORWARD",
        "JUMP_BACKWARD",
        "JUMP_ABSOLUTE",
        "JUMP_BACKWARD_NO_INTERRUPT",
        "JUMP",
        "JUMP_NO_INTERRUPT",
        "RETURN_VALUE",
        "RETURN_CONST",
        "RAISE_VARARGS",
        "RERAISE",
    }
)
_SETUPS = frozenset({"SETUP_FINALLY", "SETUP_WITH", "SETUP_ASYNC_WITH"})
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)

_cache: dict[CodeType, dict[int, frozenset[str]] | None] = {}
_CACHE_MAX = 4096


def all_locals(code: CodeType) -> frozenset[str]:
    return frozenset(
        (
            *code.co_varnames,
            *code.co_cellvars,
            *code.co_freevars,
            *("." + n for n in code.co_names),
        )
    )


def locals_after(code: CodeType, lasti: int) -> frozenset[str]:
    """The local variables ``code`` may load after the instruction at ``lasti``."""
    return frozenset(n for n in live_after(code, lasti) if not n.startswith("."))


def names_after(code: CodeType, lasti: int) -> frozenset[str]:
    """The global and attribute names the rest of ``code`` may load after
    the instruction at ``lasti``."""
    return frozenset(n[1:] for n in live_after(code, lasti) if n.startswith("."))


def live_after(code: CodeType, lasti: int) -> frozenset[str]:
    """The locals of ``code`` that may be loaded after the instruction at
    ``lasti`` (a frame's ``f_lasti``) completes (and, prefixed with ".", the
    global and attribute names it may load)."""
    if code in _cache:
        table = _cache[code]
    else:
        table = _analyse(code)
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[code] = table
    if table is None or lasti < 0:
        return all_locals(code)
    found = table.get(lasti)
    if found is not None:
        return found
    # An offset inside an instruction's caches or arguments: the instruction before.
    before = [o for o in table if o <= lasti]
    return table[max(before)] if before else all_locals(code)


#: pytest's assertion rewriting loads builtins under this global name.
_PYTEST_BUILTINS = "@py_builtins"


def _uses_defs(
    ins: dis.Instruction, before: dis.Instruction | None, every: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    name = ins.opname
    arg = ins.argval
    if arg in _INTROSPECTION and name in _NAME_LOADS:
        if before is not None and before.argval == _PYTEST_BUILTINS:
            return (), ()
        return every, ()
    if name in _LOADS and isinstance(arg, str):
        return (arg,), ()
    if name in _NAME_LOADS and isinstance(arg, str):
        return ("." + arg,), ()
    if name in _DOUBLE_LOADS and isinstance(arg, tuple):
        return tuple(str(a) for a in arg), ()
    if name in _STORES and isinstance(arg, str):
        return (), (arg,)
    if name == "STORE_FAST_LOAD_FAST" and isinstance(arg, tuple):
        return (str(arg[1]),), (str(arg[0]),)
    if name == "STORE_FAST_STORE_FAST" and isinstance(arg, tuple):
        return (), tuple(str(a) for a in arg)
    return (), ()


def _handlers(code: CodeType, offsets: list[int]) -> dict[int, list[int]] | None:
    """Exception handler targets reachable from each offset (3.11+: the
    exception table; None when it cannot be read)."""
    parse = getattr(dis, "_parse_exception_table", None)
    if parse is None:
        return None
    try:
        entries = parse(code)
    except Exception:
        return None
    out: dict[int, list[int]] = {}
    for e in entries:
        for o in offsets:
            if e.start <= o < e.end:
                out.setdefault(o, []).append(e.target)
    return out


def _analyse(code: CodeType) -> dict[int, frozenset[str]] | None:
    """live-out of every instruction, or None (treat every local as live)."""
    try:
        instrs = list(dis.get_instructions(code))
    except Exception:
        return None
    if not instrs:
        return None
    offsets = [i.offset for i in instrs]
    index = {o: n for n, o in enumerate(offsets)}
    succ: list[list[int]] = [[] for _ in instrs]
    if sys.version_info >= (3, 11):
        handlers = _handlers(code, offsets)
        if handlers is None:
            return None
    else:
        handlers = {}
    for n, ins in enumerate(instrs):
        if ins.opname not in _NO_FALLTHROUGH and n + 1 < len(instrs):
            succ[n].append(n + 1)
        if ins.opcode in _JUMPS and isinstance(ins.argval, int):
            target = index.get(ins.argval)
            if target is None:
                return None
            succ[n].append(target)
            if ins.opname in _SETUPS:
                # 3.10: the handler may be entered from anywhere in the block.
                for m in range(n, target):
                    succ[m].append(target)
        for h in handlers.get(ins.offset, ()):
            target = index.get(h)
            if target is None:
                return None
            succ[n].append(target)
    every = tuple(n for n in all_locals(code) if not n.startswith("."))
    uses_defs = [_uses_defs(i, instrs[n - 1] if n else None, every) for n, i in enumerate(instrs)]
    live_in: list[frozenset[str]] = [frozenset()] * len(instrs)
    live_out: list[frozenset[str]] = [frozenset()] * len(instrs)
    changed = True
    while changed:
        changed = False
        for n in range(len(instrs) - 1, -1, -1):
            out = _union(live_in[s] for s in succ[n])
            uses, defs = uses_defs[n]
            new_in = (out - set(defs)) | set(uses)
            if out != live_out[n] or new_in != live_in[n]:
                live_out[n] = out
                live_in[n] = new_in
                changed = True
    return {o: live_out[n] for n, o in enumerate(offsets)}


def _union(sets: Iterable[frozenset[str]]) -> frozenset[str]:
    out: frozenset[str] = frozenset()
    for s in sets:
        out |= s
    return out
