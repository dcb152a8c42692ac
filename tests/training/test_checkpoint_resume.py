"""A cell killed anywhere resumes from its epoch checkpoint to the record of an
uninterrupted run (``training.checkpoint``, ``training.preempt``).

Each run is a fresh child process of ``tests/helpers/checkpoint_driver.py`` (a fork server: one
Python + torch start-up for all of them); the child kills itself at a chosen moment.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_bench.training.checkpoint_file import read_info, verified_payload
from fer_bench.training.preempt import REQUEUE_EXIT

DRIVER = Path(__file__).resolve().parents[1] / "helpers" / "checkpoint_driver.py"
EPOCHS = 3
#: Measured, not computed: they differ between runs (timing, sizes, process facts).
MEASURED = {"epoch_times_s", "setup_s", "flops_s", "eval_s", "store_s", "wall_s",
            "compile_seconds", "train_images_per_s", "eval_images_per_s", "peak_memory_bytes",
            "started_at", "finished_at", "checkpoint_write_s", "checkpoint_bytes",
            "resumed_from_epoch"}


class Driver:
    """The fork server: ``run(store, kill)`` -> (answer, child's result)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.runs = tmp, 0
        self.process = subprocess.Popen([sys.executable, str(DRIVER)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, store: Path, kill: dict | None = None) -> tuple[dict, dict]:
        self.runs += 1
        out = self.tmp / f"result-{self.runs}.json"
        command = {"store": str(store), "out": str(out), "kill": kill}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the checkpoint driver died"
        answer = json.loads(line)
        return answer, (json.loads(out.read_text()) if out.exists() else {})

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    server = Driver(tmp_path_factory.mktemp("driver"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def baseline(driver, tmp_path_factory):
    """The uninterrupted run: its record, event counts and event trace."""
    answer, result = driver.run(tmp_path_factory.mktemp("baseline"))
    assert answer == {"signal": None, "exit": 0}, result
    assert result["record"]["status"] == "ok" and result["record"]["resumed_from_epoch"] is None
    assert result["events"]["checkpoint"] == EPOCHS
    return result


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in MEASURED}


def checkpoint_state(store: Path) -> tuple[int | None, list[float]]:
    """(epoch of the store's one checkpoint, its epoch times), (None, []) without one."""
    found = list(store.rglob("*.ckpt"))
    if not found:
        return None, []
    info = read_info(found[0])
    with verified_payload(info) as handle:
        payload = torch.load(handle, map_location="cpu", weights_only=True)
    return info.epoch, payload["record"]["epoch_times_s"]


def assert_clean(store: Path, *, stale_claim: bool = False) -> None:
    """Nothing left beside the record: no checkpoint, temp file or claim (but the stale
    claim of a process killed after its record was written, when ``stale_claim``: a later
    process reads the record without claiming the cell)."""
    left = sorted(p.suffix for p in store.rglob("*") if p.is_file() and p.suffix != ".json")
    assert left == ([".claim"] if stale_claim else []), left


def kill_moments(events: dict[str, int], seed: int = 20) -> list[dict]:
    """20 seeded moments spread over the run: training batches of every epoch, evaluation
    batches, checkpoint payload writes half-way, checkpoints just in place, the record write."""
    rng = np.random.default_rng(seed)
    plan = {"forward_train": 8, "forward_eval": 4, "sink_write": 5, "checkpoint": 2, "store_put": 1}
    moments = []
    for event, count in plan.items():
        for at in sorted(rng.choice(np.arange(1, events[event] + 1), size=count, replace=False)):
            moments.append({"event": event, "at": int(at), "signal": "KILL"})
    return moments


def test_sigkill_at_20_moments_resumes_to_the_uninterrupted_record(driver, baseline, tmp_path):
    events = baseline["events"]
    assert events["forward_train"] > 3 * EPOCHS and events["sink_write"] > 3 * EPOCHS
    expected = comparable(baseline["record"])
    resumed_from = []
    for i, kill in enumerate(kill_moments(events)):
        store = tmp_path / f"store-{i}"
        answer, _ = driver.run(store, kill)
        assert answer == {"signal": signal.SIGKILL, "exit": None}, kill
        epoch, times = checkpoint_state(store)
        answer, result = driver.run(store)
        assert answer == {"signal": None, "exit": 0}, (kill, result)
        record = result["record"]
        assert comparable(record) == expected, kill
        assert len(record["epoch_times_s"]) == EPOCHS
        if kill["event"] == "store_put":        # the record was written before the kill
            assert record["resumed_from_epoch"] is None and "forward" not in result["events"]
        else:
            assert record["resumed_from_epoch"] == epoch, kill
            assert record["epoch_times_s"][:len(times)] == times    # never timed twice
            assert record["checkpoint_bytes"] > 0
        assert_clean(store, stale_claim=kill["event"] == "store_put")
        resumed_from.append(epoch)
    # the moments cover a restart from scratch and resumes after every epoch but the last
    assert {None, 1, 2} <= set(resumed_from), resumed_from


@pytest.mark.parametrize("sig, event, epoch_before, expect_checkpoint", [
    ("TERM", "train", 2, 1),     # mid-epoch 2: the batch ends, epoch 2 is dropped
    ("USR1", "eval", 2, 2),      # during epoch 2's evaluation: it and its checkpoint finish
])
def test_sigterm_stops_at_a_safe_point_and_resumes(driver, baseline, tmp_path, sig, event,
                                                   epoch_before, expect_checkpoint):
    trace = baseline["trace"]
    # the moment: the 2nd training (or 1st evaluation) forward after epoch (n - 1)'s checkpoint
    after = [i for i, name in enumerate(trace) if name == "checkpoint"][epoch_before - 2]
    kind = f"forward_{event}"
    at = trace[:after].count(kind) + (2 if event == "train" else 1)
    store = tmp_path / "store"
    answer, result = driver.run(store, {"event": kind, "at": at, "signal": sig})
    assert answer == {"signal": None, "exit": REQUEUE_EXIT}, result
    message = result["preempted"]
    assert f"stopped by SIG{sig}" in message and "exit 75" in message
    assert f"checkpoint after epoch {expect_checkpoint} of {EPOCHS}" in message
    assert list(store.rglob("*.claim")) == []                     # claim released
    assert checkpoint_state(store)[0] == expect_checkpoint
    assert list(store.rglob("*.json")) == []                       # no record yet
    answer, result = driver.run(store)
    assert answer == {"signal": None, "exit": 0}
    assert comparable(result["record"]) == comparable(baseline["record"])
    assert result["record"]["resumed_from_epoch"] == expect_checkpoint
    assert_clean(store)
