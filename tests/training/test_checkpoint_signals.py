"""SIGTERM / SIGUSR1 stop a cell at a safe point (``training.preempt``): the claim is
released, the checkpoint of the last finished epoch stays, and the process exits 75
(``fer-bench run``) or ends its pytest session with 75 (the plugin), so a launcher
requeues it; the next run continues from the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# Imported before any in-process pytest run: pytester restores sys.modules after each run,
# and torch._dynamo (imported lazily by the optimizer and the FLOP counter) cannot be
# imported twice in one process.
import torch._dynamo  # noqa: F401

from fer_bench.data.clean import clean
from fer_bench.data.synthetic import make_synthetic
from fer_bench.models import unregister_model
from fer_bench.results.claims import ClaimSettings, acquire
from fer_bench.results.run import get_or_run_cell
from fer_bench.results.store import ResultStore
from fer_bench.training import preempt
from fer_bench.training.checkpoint_file import read_info
from fer_bench.training.resolve import resolve_config
from tests.helpers.cells import BASE_ARGS, make_cell, tiny_spec

pytest_plugins = ["pytester"]
MEASURED = {"epoch_times_s", "setup_s", "flops_s", "eval_s", "store_s", "wall_s",
            "compile_seconds", "train_images_per_s", "eval_images_per_s", "peak_memory_bytes",
            "started_at", "finished_at", "checkpoint_write_s", "checkpoint_bytes",
            "resumed_from_epoch", "experiment"}

#: A model that sends its own process ``$TERM_SIGNAL`` in its first training step after a
#: checkpoint appeared under ``$TERM_WHEN_CKPT_IN`` (i.e. mid-epoch 2), once.
MODEL = '''
import os, signal
from pathlib import Path
import torch
from fer_bench.models import ModelSpec, register_model, unregister_model

SENT = []


class TermNet(torch.nn.Module):
    def __init__(self, num_classes=8, in_chans=1):
        super().__init__()
        self.head = torch.nn.Linear(in_chans * 144, num_classes)

    def forward(self, x):
        where = os.environ.get("TERM_WHEN_CKPT_IN")
        if self.training and where and not SENT and any(Path(where).rglob("*.ckpt")):
            SENT.append(1)
            os.kill(os.getpid(), getattr(signal, os.environ.get("TERM_SIGNAL", "SIGTERM")))
        return self.head(torch.nn.functional.avg_pool2d(x, 4).flatten(1))


unregister_model("termnet")
register_model(ModelSpec(name="termnet", factory=TermNet, batch_size=64))
'''


@pytest.fixture(autouse=True)
def forget_signals():
    """A noted signal stops every later cell of the process: forget it after each test."""
    preempt.clear()
    yield
    preempt.clear()


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in MEASURED}


def test_handlers_are_installed_only_while_a_cell_runs():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    with preempt.handling():
        assert signal.getsignal(signal.SIGTERM) is preempt._note
        with preempt.handling():                       # nested: still ours
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.01)
        assert signal.getsignal(signal.SIGUSR1) is preempt._note
        assert preempt.requested() == "SIGUSR1"
        with pytest.raises(preempt.CellPreempted) as caught:
            preempt.check("in a test")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)) == before
    assert isinstance(caught.value, SystemExit) and caught.value.code == preempt.REQUEUE_EXIT == 75
    assert str(caught.value) == "stopped by SIGUSR1 in a test"


def test_a_signal_ignored_by_a_wrapper_stays_ignored():
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        with preempt.handling():
            assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is preempt._note
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.01)
            assert preempt.requested() is None
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_sigterm_stops_a_wait_for_another_process_claim(tmp_path):
    """A cell waiting for a claim someone else holds stops at once on SIGTERM (exit 75),
    without taking the claim or training anything."""
    data = clean(make_synthetic(400, seed=4))
    spec = tiny_spec("waiter")
    cell = make_cell(spec, data, config=resolve_config(spec, epochs=1))
    store = ResultStore(tmp_path, claims=ClaimSettings(stale_after_s=600, wait_s=60, poll_s=0.05))
    held, _ = acquire(store.claim_path(cell), store.claim_settings)     # "another process"

    def terminate_once_waiting():
        deadline = time.monotonic() + 30
        while signal.getsignal(signal.SIGTERM) is not preempt._note and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)                                # in the claim's poll loop by now
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=terminate_once_waiting)
    start = time.monotonic()
    sender.start()
    try:
        with pytest.raises(preempt.CellPreempted, match="while waiting for the claim on cell waiter"):
            get_or_run_cell(store, spec, data, cell, device="cpu")
    finally:
        sender.join()
        claim = json.loads(store.claim_path(cell).read_text())
        held.release()
    assert time.monotonic() - start < 20
    assert claim["token"] == held.token and store.get(cell) is None


def _cli(tmp_path: Path, store: Path, *, term: str | None) -> subprocess.CompletedProcess:
    script = tmp_path / "run_cli.py"
    script.write_text(MODEL + "\nimport sys\nfrom fer_bench.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "FER_BENCH_CACHE": str(tmp_path / "cache")}
    env.pop("TERM_WHEN_CKPT_IN", None)
    if term:
        env.update(TERM_WHEN_CKPT_IN=str(store), TERM_SIGNAL=term)
    args = ["run", "--model", "termnet", "--nhot", "3", "--split", "ordinary", "--seed", "0",
            "--epochs", "3", "--data", "synthetic", "--device", "cpu", "--results", str(store), "--json"]
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)


def test_fer_bench_run_exits_75_on_sigterm_and_resumes(tmp_path):
    store = tmp_path / "store"
    stopped = _cli(tmp_path, store, term="SIGTERM")
    assert stopped.returncode == 75, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if "requeue" in line]
    assert len(lines) == 1 and "stopped by SIGTERM in epoch 2 before batch" in lines[0]
    assert "checkpoint after epoch 1 of 3 is kept" in lines[0] and "exit 75" in lines[0]
    assert not list(store.rglob("*.claim")) and not list(store.rglob("*.json"))
    (checkpoint,) = store.rglob("*.ckpt")
    assert read_info(checkpoint).epoch == 1

    resumed = _cli(tmp_path, store, term=None)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)["record"]
    assert record["resumed_from_epoch"] == 1 and len(record["epoch_times_s"]) == 3
    assert not list(store.rglob("*.ckpt")) and not list(store.rglob("*.claim"))

    fresh = _cli(tmp_path, tmp_path / "fresh", term=None)
    assert fresh.returncode == 0, fresh.stderr
    assert comparable(record) == comparable(json.loads(fresh.stdout)["record"])


def test_plugin_ends_the_session_with_75_and_the_next_session_resumes(pytester, data_dir):
    pytester.makeconftest(MODEL)
    pytester.makepyfile(test_grid='''
def test_grid(fer_cell, benchmark):
    assert fer_cell.run(benchmark).status == "ok"
''')
    store = pytester.path / "results"
    args = ("-s", "--fer-profile", "smoke", "--fer-epochs", "3", "--fer-data", str(data_dir),
            "--fer-models", "termnet", "--fer-nhot", "8", "--fer-splits", "ordinary",
            "--fer-results", str(store), *BASE_ARGS)
    os.environ["TERM_WHEN_CKPT_IN"] = str(store)
    try:
        stopped = pytester.runpytest_inprocess(*args)
    finally:
        del os.environ["TERM_WHEN_CKPT_IN"]
    assert stopped.ret == 75
    stopped.stdout.fnmatch_lines(["*stopped by SIGTERM in epoch 2*exit 75: requeue to continue*"])
    assert not list(store.rglob("*.claim")) and not list(store.rglob("*.json"))
    assert [info.epoch for info in ResultStore(store).checkpoints()] == [1]
    preempt.clear()                    # the in-process session's signal

    try:
        resumed = pytester.runpytest_inprocess(*args)
    finally:
        unregister_model("termnet")
    assert resumed.ret == 0
    (record,) = ResultStore(store).records()
    assert record.resumed_from_epoch == 1 and record.status == "ok"
    assert ResultStore(store).checkpoints() == []
