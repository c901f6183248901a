"""The exception deadlockwatch raises in a deadlocked thread."""

from __future__ import annotations

from typing import Any

from deadlockwatch._model import Finding
from deadlockwatch._report.text import step_text


def summary(finding: Finding) -> str:
    """One line: the kind, the cause and the cycle."""
    steps = "; ".join(step_text(finding, s) for s in finding.cycle)
    return f"{finding.kind}: {finding.cause}" + (f" ({steps})" if steps else "")


class DeadlockError(RuntimeError):
    """Raised inside one blocked thread of a deadlock (``on_deadlock="raise"``).

    The wait it interrupts did not acquire anything; ``finding`` says what the
    deadlock was.  Releasing what this thread holds lets the others proceed.
    """

    def __init__(self, finding: Finding) -> None:
        super().__init__(summary(finding))
        self.finding = finding

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.finding,))
