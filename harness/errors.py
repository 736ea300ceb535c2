"""Errors the harness reports to users: what was expected, what was seen, what to try."""

from __future__ import annotations


class HarnessError(Exception):
    """Bad usage or environment: the CLI prints the message on one line and exits 2."""

    def __init__(self, expected: str, seen: str = "", hint: str = "") -> None:
        self.expected, self.seen, self.hint = expected, seen, hint
        super().__init__(self.oneline())

    def oneline(self) -> str:
        parts = [f"expected {self.expected}" if self.seen else self.expected]
        if self.seen:
            parts.append(f"seen: {self.seen}")
        if self.hint:
            parts.append(f"try: {self.hint}")
        return "; ".join(parts)


class WaitTimeout(HarnessError):
    """A bounded wait ran out."""
