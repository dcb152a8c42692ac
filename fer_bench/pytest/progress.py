"""Progress of a long grid inside pytest's own output: which cell, which epoch, and an ETA.

Lines go through pytest's terminal reporter with output capturing suspended (the way
pytest's live logging writes), so they never end up in a test's captured output and never
interleave with pytest's own writes:

* on a terminal (and not ``-q``): one live status line per cell, rewritten every epoch in
  place of pytest's current line, then replaced by the cell's summary line when the cell
  ends; pytest's line (``benchmarks/test_nhot.py ..``) is then written back under it as it
  was, so pytest's own progress goes on unbroken below the cells' lines;
* otherwise (``-q``, a pipe, CI logs): only the one summary line per cell, written after
  pytest has reported the test (``flush``, called from ``pytest_runtest_logfinish``).

Under an xdist worker nothing is written (the controller shows pytest's own progress).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any


def format_duration(seconds: float | None) -> str:
    """Seconds -> ``"45s"``, ``"3m05s"``, ``"2h04m"``; ``"?"`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}%"


def _flop_rate(record: Any) -> str:
    """", training 41.3 TFLOP/s = 4.2% of the H200's ..." (``training.flops.flop_rate_text``),
    "" for a record without a FLOP count."""
    if getattr(record, "train_flops_per_image", None) is None:
        return ""
    from fer_bench.training.flops import flop_rate_text

    text = flop_rate_text(record)
    return f", {text}" if text else ""


class GridProgress:
    """Status lines for the cells this process runs. All times are wall seconds."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self.total = 0                          # cells collected in this process
        self.done = 0                           # cells finished (trained, stored or failed)
        self._trained_cell_seconds: list[float] = []
        self._cell_id = ""
        self._cell_started = 0.0
        self._epoch_seconds: list[float] = []
        self._epochs_in_cell = 0
        self._held: str | None = None           # pytest's line while a live line covers it
        self._pending: tuple[str, dict[str, bool]] | None = None

    # ------------------------------------------------------------------ output
    def _reporter(self) -> Any | None:
        if hasattr(self._config, "workerinput"):  # xdist worker: its stdout goes nowhere useful
            return None
        return self._config.pluginmanager.get_plugin("terminalreporter")

    @property
    def live(self) -> bool:
        """True when per-epoch live lines are wanted (a terminal, not ``-q``)."""
        reporter = self._reporter()
        return bool(reporter is not None and reporter.isatty() and self._config.get_verbosity() >= 0)

    def _suspended_capture(self) -> contextlib.AbstractContextManager:
        capture = self._config.pluginmanager.get_plugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()

    def _write(self, line: str, *, final: bool, **markup: bool) -> None:
        reporter = self._reporter()
        if reporter is None:
            return
        with self._suspended_capture():
            if self.live:
                self._write_live(reporter, line, final, markup)
            elif final:
                # Called right after pytest wrote the test's letter / word on the current line.
                reporter.write("\n" + line + "\n", **markup)
            reporter.flush()

    def _write_live(self, reporter: Any, line: str, final: bool, markup: dict[str, bool]) -> None:
        """Put ``line`` where pytest's current line is (``\r``); a final line stays, and
        pytest's line is written back after it. pytest's text of its current line is its
        terminal writer's ``_current_line`` (private; ``tests/test_plugin_output.py``
        breaks if it goes); without it the line is not restored, only never broken."""
        writer = getattr(reporter, "_tw", None)
        if self._held is None:
            self._held = str(getattr(writer, "_current_line", "") or "")
        if not final and writer is not None:   # one screen line, or \r cannot rewrite it
            line = line[:max(int(getattr(writer, "fullwidth", 80)) - 1, 20)]
        reporter.rewrite(line, erase=True, **markup)
        if final:
            held, self._held = self._held, None
            reporter.write("\n")
            if held:
                reporter.write(held)

    def announce(self, lines: list[str]) -> None:
        """Write whole lines (the run's plan) on lines of their own, before pytest's next."""
        reporter = self._reporter()
        if reporter is None:
            return
        with self._suspended_capture():
            for line in lines:
                reporter.write_line(line)
            reporter.flush()

    # ------------------------------------------------------------------ ETA
    def eta_seconds(self, epochs_left_in_cell: int = 0) -> float | None:
        """Estimated seconds until the last cell of this process is done.

        A finished trained cell's wall time is the unit; before one exists, the current
        cell's mean epoch time times its epochs stands in. Cells taken from the store count
        as instant, so the ETA is an upper bound when the store holds some of them.
        """
        cells_after_this = max(self.total - self.done - (1 if self._cell_id else 0), 0)
        if cells_after_this == 0 and epochs_left_in_cell == 0:
            return 0.0
        mean_epoch = sum(self._epoch_seconds) / len(self._epoch_seconds) if self._epoch_seconds else None
        if self._trained_cell_seconds:
            per_cell = sum(self._trained_cell_seconds) / len(self._trained_cell_seconds)
        elif mean_epoch is not None and self._epochs_in_cell:
            per_cell = mean_epoch * self._epochs_in_cell
        else:
            return None
        in_cell = (mean_epoch or 0.0) * epochs_left_in_cell
        return in_cell + per_cell * cells_after_this

    # ------------------------------------------------------------------ events
    def start_cell(self, cell_id: str) -> None:
        """A cell begins (before the store lookup)."""
        self._cell_id = cell_id
        self._cell_started = time.perf_counter()
        self._epoch_seconds = []
        self._epochs_in_cell = 0

    def on_epoch(self, report: Any) -> None:
        """The runner's per-epoch callback: ``report.epoch`` (1-based), ``.epochs``,
        ``.train_seconds``, ``.train_loss``, ``.val_acc``, ``.test_acc``."""
        self._epoch_seconds.append(float(report.train_seconds))
        self._epochs_in_cell = int(report.epochs)
        if not self.live:
            return
        eta = self.eta_seconds(int(report.epochs) - int(report.epoch))
        line = (
            f"fer_bench [{self.done + 1}/{self.total}] {self._cell_id} "
            f"epoch {report.epoch}/{report.epochs} {report.train_seconds:.1f}s "
            f"loss {report.train_loss:.4f} val {_percent(report.val_acc)} | ETA {format_duration(eta)}"
        )
        self._write(line, final=False)

    def finish_cell(self, record: Any, from_store: bool) -> None:
        """A cell is done: write its one summary line (``record`` is a ``CellRecord``)."""
        wall = time.perf_counter() - self._cell_started
        if not from_store and record.status == "ok":
            self._trained_cell_seconds.append(wall)
        self.done += 1
        self._cell_id = ""
        position = f"fer_bench [{self.done}/{self.total}] {record.cell_id}"
        if record.status != "ok":
            line, markup = f"{position} FAILED: {record.error}", {"red": True}
        else:
            how = "from store" if from_store else f"{len(record.epoch_times_s)} epochs in {format_duration(wall)}"
            line, markup = (
                f"{position} {how}: test {_percent(record.acc_honest)} honest, "
                f"{_percent(record.acc_optimistic)} optimistic{_flop_rate(record)} | "
                f"ETA {format_duration(self.eta_seconds())}"
            ), {}
        if self.live:
            self._write(line, final=True, **markup)
        else:
            self._pending = (line, markup)

    def flush(self) -> None:
        """Write the summary line held back until pytest reported the test (non-live mode)."""
        if self._pending is not None:
            line, markup = self._pending
            self._pending = None
            self._write(line, final=True, **markup)
