"""One progress display for every long command, the same in a terminal and in a log file.

In a terminal `Progress` draws a tqdm bar (values as its postfix); when the output is a file or
a pipe, where a redrawn bar turns into noise, it prints a plain line at most every `seconds`
and at the end: `collect play/train: 40/100 ep  12.3 s  eta 18.5 s  successes 38`. Messages
that must stay (`write`) go above the bar, or as their own line.
"""
from __future__ import annotations

import sys
import time


class Progress:
    """Counts `total` units of work and shows how far it is.

    Args:
        total: units of work (steps, episodes).
        desc: what is counted, as the line's prefix (`"pretrain"`, `"collect reach/train"`).
        unit: the unit's name (`"step"`, `"ep"`).
        initial: units already done (a resumed run).
        seconds: at most one plain line per this many seconds (log files and pipes).
        enabled: False shows nothing (`write` still prints).
        stream: where to write (default: standard output).
    """

    def __init__(self, total: int, desc: str, unit: str = "step", initial: int = 0,
                 seconds: float = 15.0, enabled: bool = True, stream=None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.done = self._start = int(initial)
        self.seconds = float(seconds)
        self.enabled = bool(enabled)
        self.stream = stream if stream is not None else sys.stdout
        self.values: dict = {}
        self._t0 = self._last = time.perf_counter()
        self._bar = None
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc=desc, unit=unit,
                             file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1, **values) -> None:
        """Counts `n` more units; `values` (a loss, a success count) are shown beside."""
        self.done += n
        self.values.update(values)
        if self._bar is not None:
            self._bar.update(n)
            if values:
                self._bar.set_postfix({k: _short(v) for k, v in self.values.items()},
                                      refresh=False)
            return
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.seconds or self.done >= self.total):
            self._last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        """The plain progress line."""
        elapsed = (time.perf_counter() if now is None else now) - self._t0
        rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        values = "".join(f"  {k} {_short(v)}" for k, v in self.values.items())
        return (f"{self.desc}: {self.done}/{self.total} {self.unit}  {elapsed:.1f} s  "
                f"eta {eta:.1f} s{values}")

    def write(self, message: str) -> None:
        """Prints a message that stays (above the bar in a terminal)."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _short(value) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
