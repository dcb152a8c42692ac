"""Preemption: SIGTERM / SIGUSR1 stop a cell at a safe point, never half-way.

While ``get_or_run_cell`` works on a cell (waiting for its claim, building its data,
training, writing its record) ``handling()`` catches SIGTERM and SIGUSR1 (what Slurm sends
before it kills a job at its time limit or on preemption, ``--signal``). The handler only
notes the signal; the work stops at the next safe point (``check``):

* between two training batches: the epoch in progress is dropped whole; the checkpoint of
  the last finished epoch (``training.checkpoint``, written after every epoch) is on disk;
* after an epoch's evaluation and checkpoint write (a signal that came during either lets
  both finish, so the checkpoint written is complete);
* before the cell starts, or while it waits for another process's claim;
* after the last epoch the record is written first (milliseconds), then the process stops.

Then ``CellPreempted`` is raised: the claim is released on the way out, and the process
exits with ``REQUEUE_EXIT`` (75, ``EX_TEMPFAIL`` of sysexits.h: "try again later"). A
launcher that sees 75 requeues the shard; the next run of the cell continues from its
checkpoint. ``CellPreempted`` is a ``SystemExit``: ``fer-bench run`` exits with 75, the
pytest plugin ends the session with ``pytest.exit(returncode=75)``. A signal that arrives
outside a cell (between cells, while data loads) keeps its default action: the process
ends at once, with no claim held and nothing half-written (records and checkpoints are
written atomically); a launcher should treat "killed by SIGTERM/SIGUSR1" as requeueable too.

Once a signal is noted, every later cell of the process stops at once (the process is
leaving); ``clear`` forgets it (tests).

Slurm: ``sbatch --signal=TERM@120`` (or a wrapper that forwards its warning signal as
SIGTERM to pytest) gives a cell 120 s to reach its safe point; submitit's own warning,
SIGUSR2, is not one of these (``launch.shard`` ignores it in pytest).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Exit status of a process stopped by ``CellPreempted``: requeue it (sysexits EX_TEMPFAIL).
REQUEUE_EXIT = 75
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_pending: int | None = None
_depth = 0
_saved: dict[int, object] = {}
_lock = threading.Lock()


class CellPreempted(SystemExit):
    """A cell stopped by SIGTERM / SIGUSR1 at a safe point; ``code`` is ``REQUEUE_EXIT``."""

    def __init__(self, message: str) -> None:
        super().__init__(REQUEUE_EXIT)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _note(signum: int, frame: object) -> None:
    global _pending
    if _pending is None:       # only a flag: logging or I/O in a signal handler is unsafe
        _pending = signum


def requested() -> str | None:
    """The name of the preempting signal noted in this process (e.g. "SIGTERM"), else None."""
    return None if _pending is None else signal.Signals(_pending).name


def check(where: str = "") -> None:
    """Raise ``CellPreempted`` when a preempting signal was noted; ``where`` says at which
    safe point (e.g. "in epoch 3 before batch 5/12")."""
    if _pending is not None:
        raise CellPreempted(f"stopped by {requested()}" + (f" {where}" if where else ""))


def clear() -> None:
    """Forget a noted signal (tests; a process that stops never needs this)."""
    global _pending
    _pending = None


@contextmanager
def handling() -> Iterator[None]:
    """Note SIGTERM / SIGUSR1 for the body instead of dying (nests; the previous handlers
    come back when the outermost body ends). A signal the process ignores (``SIG_IGN``, set
    by a wrapper) stays ignored. Outside the main thread signals cannot be caught: the body
    runs with the default actions."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _lock:
        if _depth == 0:
            for signum in PREEMPT_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:   # ignored by choice: stays so
                    _saved[signum] = signal.signal(signum, _note)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for signum, previous in _saved.items():   # None: set outside Python
                    signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # type: ignore[arg-type]
                _saved.clear()
