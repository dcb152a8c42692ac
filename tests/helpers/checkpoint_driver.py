"""Test helper (tests only): a fork server that runs one small cell in fresh child
processes, each of which may be killed at a chosen moment, so a test can kill and resume
a cell many times without paying a Python + torch start-up per process.

Run as ``python tests/helpers/checkpoint_driver.py``: it imports torch and fer_bench,
builds the synthetic data once (numpy only: no torch op runs in the parent, so forking is
safe), then reads one JSON command per line on stdin and answers one JSON line per command
after its child ended::

    command  {"store": "result store folder", "out": "path of the child's result file",
              "kill": null | {"event": E, "at": n, "signal": "KILL" | "TERM" | "USR1"}}
    answer   {"signal": <number that killed the child> | null, "exit": <status> | null}

Events (counted from 1 over the child's whole run; the signal is sent to the child itself
at the n-th one):

* ``forward``: a forward pass of the model (set-up check, FLOP count, training batches,
  evaluation batches): ``forward_train`` / ``forward_eval`` count the two modes apart;
* ``sink_write``: a chunk of a checkpoint payload being written (the checkpoint half-way
  in its temp file);
* ``checkpoint``: a checkpoint just renamed into place;
* ``store_put``: the record's first store write just done (checkpoint not yet removed).

The child writes ``{"record": ..., "events": {event: count}, "trace": [...]}`` to ``out``
(or ``{"preempted": message}``) and exits 0, or 75 when preempted.

The cell: ``Noisy`` (conv -> dropout -> a factor drawn from numpy's and Python's global
generators in training mode -> linear), PLD loss (label draws), online flip + shift
augmentation, Adam with a one-cycle schedule, EMA weights: every random stream a cell can
hold is used, so a resume that missed one would differ.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import sys
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from fer_bench.data.clean import clean  # noqa: E402
from fer_bench.data.synthetic import make_synthetic  # noqa: E402
from fer_bench.models import ModelSpec  # noqa: E402
from fer_bench.results.claims import ClaimSettings  # noqa: E402
from fer_bench.results.run import get_or_run_cell  # noqa: E402
from fer_bench.results.store import ResultStore  # noqa: E402
from fer_bench.training import checkpoint, checkpoint_file  # noqa: E402
from fer_bench.training.preempt import CellPreempted  # noqa: E402
from fer_bench.training.resolve import resolve_cell, resolve_config  # noqa: E402

EPOCHS = 3
N_IMAGES = 700
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "USR1": signal.SIGUSR1}


class Counter:
    """Counts events; sends ``signal`` to this process at the ``at``-th ``event``."""

    def __init__(self, kill: dict | None) -> None:
        self.kill = kill
        self.counts: dict[str, int] = {}
        self.trace: list[str] = []

    def hit(self, event: str, *also: str) -> None:
        for name in (event, *also):
            self.counts[name] = self.counts.get(name, 0) + 1
        self.trace.append(also[0] if also else event)
        kill = self.kill
        if kill and kill["event"] in (event, *also) and self.counts[kill["event"]] == kill["at"]:
            self.kill = None
            os.kill(os.getpid(), SIGNALS[kill["signal"]])


COUNTER = Counter(None)


class Noisy(nn.Module):
    def __init__(self, num_classes: int = 8, in_chans: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 6, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(54, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        COUNTER.hit("forward", "forward_train" if self.training else "forward_eval")
        h = self.drop(self.pool(torch.relu(self.conv(x))).flatten(1))
        if self.training:
            h = h * float(1.0 + 0.05 * np.random.standard_normal() + 0.05 * random.random())
        return self.head(h)


SPEC = ModelSpec(name="noisy", factory=Noisy, batch_size=64, lr=3e-3)


def make_cell(data):
    config = resolve_config(SPEC, epochs=EPOCHS, loss="pld", augmentation="rand_flip_shift2",
                            ema=0.9, schedule="onecycle", warmup=0.3)
    return resolve_cell(SPEC, variant="nhot-3", split="ordinary", seed=0, config=config,
                        dataset_fingerprint=data.fingerprint, device="cpu")


def _install_hooks() -> None:
    writer_write = checkpoint_file._HashingWriter.write

    def counted_write(self, data):
        COUNTER.hit("sink_write")
        return writer_write(self, data)

    checkpoint_file._HashingWriter.write = counted_write
    write = checkpoint.write_checkpoint

    def counted_checkpoint(*args, **kwargs):
        size = write(*args, **kwargs)
        COUNTER.hit("checkpoint")
        return size

    checkpoint.write_checkpoint = counted_checkpoint
    put = ResultStore.put

    def counted_put(self, record):
        path = put(self, record)
        COUNTER.hit("store_put")
        return path

    ResultStore.put = counted_put


def child(command: dict, data) -> int:
    # The runner seeds torch only; a process that starts the same way draws the same
    # numpy / Python numbers (Python reseeds its generator in a forked child).
    np.random.seed(0)
    random.seed(0)
    COUNTER.kill = command.get("kill")
    _install_hooks()
    store = ResultStore(command["store"], claims=ClaimSettings(stale_after_s=60, wait_s=20, poll_s=0.05))
    out = Path(command["out"])
    try:
        record, _ = get_or_run_cell(store, SPEC, data, make_cell(data), device="cpu")
    except CellPreempted as exc:
        out.write_text(json.dumps({"preempted": str(exc), "events": COUNTER.counts}))
        return exc.code
    out.write_text(json.dumps({"record": record.to_dict(), "events": COUNTER.counts,
                               "trace": COUNTER.trace}))
    return 0


def main() -> None:
    torch.set_num_threads(1)
    importlib.import_module("torch._dynamo")   # the FLOP counter's import (2 s): once, not per child
    data = clean(make_synthetic(N_IMAGES, seed=5))
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 98
            try:
                code = child(command, data)
            except BaseException:
                traceback.print_exc()
                code = 99
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        answer = {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                  "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
