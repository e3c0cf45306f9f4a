"""Progress reporting for long jobs: a live bar on a terminal, dated lines in a log.

Click's bar draws nothing when stderr is not a terminal (CI, ``run-all`` logs), so there the
same object prints a line with the count, elapsed time and ETA every ``every_seconds`` and at
the end.
"""

from __future__ import annotations

import sys
import time

__all__ = ["LineProgress", "progress"]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class LineProgress:
    """``update(n)`` counts work; a line goes to stderr at most every ``every_seconds``, and one
    at the end."""

    def __init__(self, length: int, label: str, every_seconds: float = 30.0, stream=None):
        self.length, self.label, self.every = max(int(length), 0), label, every_seconds
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self.last = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self._line()
        return None

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.start
        eta = elapsed / self.done * (self.length - self.done) if self.done else float("nan")
        percent = 100 * self.done / self.length if self.length else 100.0
        eta_text = _duration(eta) if self.done else "?"
        print(f"{self.label}: {self.done}/{self.length} ({percent:.0f}%), elapsed {_duration(elapsed)}, "
              f"ETA {eta_text}", file=self.stream, flush=True)


def progress(length: int, label: str, *, show: bool = True, every_seconds: float = 30.0):
    """A context manager with ``update(n)``: click's bar on a terminal, else :class:`LineProgress`
    (or nothing when ``show`` is false)."""
    if not show:
        return LineProgress(length, label, every_seconds=float("inf"), stream=_Null())
    if sys.stderr.isatty():
        import click

        return click.progressbar(length=length, label=label, show_eta=True, show_pos=True, file=sys.stderr)
    return LineProgress(length, label, every_seconds=every_seconds)


class _Null:
    def write(self, text):
        return len(text)

    def flush(self):
        pass
