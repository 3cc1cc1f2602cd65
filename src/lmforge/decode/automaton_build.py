"""Compiling a regex or JSON schema into outlines-core's token automaton within a budget.

The compile runs in a child process (started with spawn, importing only this module and outlines-core):
outlines-core's Rust code cannot be interrupted, and a pattern such as `(a{1,999}){1,999}` (18 characters)
or a string schema with `maxLength: 100000` would compile for minutes holding a core. The parent waits at
most the budget's seconds, then kills the child; before that, the pattern's size is estimated in automaton
states (the positions of the pattern with its counted repeats written out) and refused above the budget.
"""

from __future__ import annotations

import multiprocessing
import pickle
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

try:
    from re import _parser as sre_parse  # Python 3.11+
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef]

_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None)} - {None}
_UNBOUNDED = sre_parse.MAXREPEAT


@dataclass(frozen=True)
class CompileBudget:
    """What compiling one constraint may cost: automaton states (estimated before compiling) and seconds."""

    max_states: int = 20_000
    max_seconds: float = 30.0


class BudgetExceeded(Exception):
    """A constraint over its budget: `limit` names which ("states" or "seconds")."""

    def __init__(self, limit: str, value: float, allowed: float) -> None:
        super().__init__(limit, value, allowed)
        self.limit, self.value, self.allowed = limit, value, allowed


class CompileFailed(Exception):
    """outlines-core could not read the pattern or schema (its first message line)."""


class CompileCancelled(Exception):
    """The process is shutting down: compiles in flight were stopped."""


def pattern_states(regex: str, ceiling: int = 10**12) -> int | None:
    """About how many automaton states `regex` needs: its positions with counted repeats written out
    (`(a{1,999}){1,999}` → 998,001); None where Python's parser cannot read it (outlines' syntax is a little
    wider). Stops counting at `ceiling`."""
    try:
        parsed = sre_parse.parse(regex)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None

    def size(items: Any) -> int:
        total = 0
        for op, value in items:
            if op in _REPEATS:
                low, high, inner = value
                times = max(low, 1) if high == _UNBOUNDED else high
                total += size(inner) * max(times, 1)
            elif op is sre_parse.SUBPATTERN:
                total += size(value[-1])
            elif op is sre_parse.BRANCH:
                total += sum(size(branch) for branch in value[1])
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                total += size(value[1])
            elif op is sre_parse.AT:
                continue
            else:
                total += 1
            if total > ceiling:
                return ceiling
        return total
    try:
        return size(parsed)
    except RecursionError:
        return None


def _compile_in_child(connection, regex: str | None, schema: str | None, eos_id: int,
                      mapping: dict[bytes, list[int]], max_states: int) -> None:
    """The child's work: schema → regex and its states estimate, the index; its answer sent through `connection`."""
    try:
        from outlines_core import Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema

        if schema is not None:  # (a regex given as such was estimated by the parent already)
            regex = build_regex_from_schema(schema)
            states = pattern_states(regex)
            if states is not None and states > max_states:
                connection.send(("states", states))
                return
        index = Index(regex, Vocabulary(eos_id, mapping))
        connection.send(("ok", pickle.dumps(index)))
    except Exception as error:  # noqa: BLE001 — outlines' message goes back to the parent
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        connection.send(("failed", first if len(first) <= 300 else first[:300] + " …"))
    finally:
        connection.close()


_LIVE: set[multiprocessing.Process] = set()
_LIVE_LOCK = threading.Lock()
_CLOSING = threading.Event()


def cancel_compiles() -> None:
    """Stop every compile in flight and refuse new ones (the server is shutting down)."""
    _CLOSING.set()
    with _LIVE_LOCK:
        for process in list(_LIVE):
            process.kill()


def compile_index(regex: str | None, schema: str | None, eos_id: int, mapping: dict[bytes, list[int]],
                  budget: CompileBudget) -> Any:
    """outlines-core's Index of `regex` (or of the JSON `schema`) over `mapping` (token bytes → ids), compiled in
    a child process within `budget`; BudgetExceeded, CompileFailed or CompileCancelled otherwise."""
    if regex is not None:
        states = pattern_states(regex)
        if states is not None and states > budget.max_states:
            raise BudgetExceeded("states", states, budget.max_states)
    if _CLOSING.is_set():
        raise CompileCancelled()
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_compile_in_child, args=(sender, regex, schema, eos_id, mapping, budget.max_states),
                              daemon=True, name="lmforge-constraint-compile")
    with _LIVE_LOCK:
        _LIVE.add(process)
    started = time.monotonic()
    try:
        process.start()
        sender.close()
        answer = None
        while answer is None:
            if _CLOSING.is_set():
                raise CompileCancelled()
            left = budget.max_seconds - (time.monotonic() - started)
            if left <= 0:
                raise BudgetExceeded("seconds", round(time.monotonic() - started, 1), budget.max_seconds)
            if receiver.poll(min(left, 0.1)):
                try:
                    answer = receiver.recv()
                except EOFError:
                    answer = ("died", None)
            elif not process.is_alive() and not receiver.poll(0):
                answer = ("died", None)
    finally:
        if process.pid is not None:  # started
            process.kill()
            process.join(5)
        sender.close()
        receiver.close()
        with _LIVE_LOCK:
            _LIVE.discard(process)
    kind, value = answer
    if kind == "ok":
        return pickle.loads(value)
    if kind == "states":
        raise BudgetExceeded("states", value, budget.max_states)
    if kind == "failed":
        raise CompileFailed(value)
    raise CompileFailed(f"the compiling process ended without an answer (exit code {process.exitcode}); the pattern may "
                        "need more memory than this machine has")
