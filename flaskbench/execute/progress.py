"""Progress bar with ETA on stderr, and the messages around it; silent with --quiet."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, quiet: bool, stream: TextIO = sys.stderr) -> None:
        self.quiet = quiet
        self._stream = stream
        self._bar: tqdm | None = None
        self._cell_s = 0.0
        self._done_s = 0.0

    def say(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        else:
            print(message, file=self._stream, flush=True)

    def warn(self, message: str) -> None:
        """Shown even with --quiet: something the user has to know about."""
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        else:
            print(message, file=self._stream, flush=True)

    def begin(self, cells: int, seconds_per_cell: float) -> None:
        self._cell_s = seconds_per_cell
        if self.quiet:
            return
        self._bar = tqdm(
            total=round(cells * seconds_per_cell),
            file=self._stream,
            unit="s",
            dynamic_ncols=True,
            bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed, ETA {remaining}",
            # Not a terminal (CI, a log file): a line every 30 s instead of a redrawn bar.
            mininterval=0.5 if self._stream.isatty() else 30,
        )

    def more(self, cells: int) -> None:
        """A trial added after the run began (repeats = "auto"): the bar grows by it."""
        if self._bar is not None and self._bar.total is not None:
            self._bar.total += round(cells * self._cell_s)
            self._bar.refresh()
        self.say(f"flaskbench: a comparison is still undecided; one more trial ({cells} cells)")

    def cell(self, index: int, total: int, cell_id: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(f"[{index}/{total}] {cell_id}", refresh=False)

    def advance(self, seconds_into_cell: float) -> None:
        if self._bar is not None:
            position = self._done_s + min(seconds_into_cell, self._cell_s)
            self._bar.update(max(0, round(position) - self._bar.n))

    def cell_done(self) -> None:
        self._done_s += self._cell_s
        self.advance(0)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
