"""A result store that several processes share (fer_bench.results.claims, ResultStore.claim): a cell
is claimed before it trains, a live claim is waited for, a stale one is taken over, and a
cell is never trained twice; ``kill -9`` at any moment leaves the store readable.

The unit tests run in this process (threads stand for processes where that is exact); the
last ones run real pytest processes on one store (tests/helpers/launch_grid.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from fer_bench.data.clean import clean
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import CellSkipped
from fer_bench.models import ModelSpec
from fer_bench.results import claims
from fer_bench.results.claims import ClaimSettings, ClaimTimeout, acquire, read_claim
from fer_bench.results.run import get_or_run_cell
from fer_bench.results.store import ResultStore
from fer_bench.training.resolve import resolve_config
from tests.helpers import launch_grid
from tests.helpers.cells import BuildCountingNet, make_cell

FAST = ClaimSettings(stale_after_s=2.0, wait_s=20.0, poll_s=0.02)


def write_claim(path: Path, *, host: str = claims.HOST, pidns: str = claims.PIDNS, pid: int,
                age_s: float = 0.0, token: str = "t0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pidns": pidns, "pid": pid, "token": token,
                                "started": "2026-01-01T00:00:00+00:00"}))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ---------------------------------------------------------------- the lock-file protocol
def test_claim_file_holds_host_pid_start_and_is_exclusive(tmp_path):
    path = tmp_path / "m" / "cell.claim"
    held, waited = acquire(path, FAST)
    info = read_claim(path)
    assert not waited and info.readable
    assert (info.host, info.pid, info.pidns) == (claims.HOST, os.getpid(), claims.PIDNS)
    assert info.started.endswith("+00:00") and info.stale_reason(FAST) is None
    assert claims._try_create(path, FAST) is None           # O_CREAT | O_EXCL: a second one fails
    held.release()
    assert not path.exists()


def test_heartbeat_keeps_a_long_claim_fresh(tmp_path):
    settings = ClaimSettings(stale_after_s=0.5, wait_s=5, poll_s=0.02)   # heartbeat every 0.05 s
    path = tmp_path / "cell.claim"
    held, _ = acquire(path, settings)
    try:
        time.sleep(1.0)                                    # twice the stale limit
        info = read_claim(path)
        assert info.age_s() < 0.5 and info.stale_reason(settings) is None
    finally:
        held.release()


@pytest.mark.parametrize("case", ["dead pid", "other host, old", "empty, old", "own pid, not held"])
def test_stale_claims(tmp_path, case):
    path = tmp_path / "cell.claim"
    if case == "dead pid":
        write_claim(path, pid=dead_pid())
    elif case == "other host, old":
        write_claim(path, host="elsewhere", pid=1, age_s=5.0)
    elif case == "empty, old":
        path.write_text("")
        then = time.time() - claims.EMPTY_GRACE_S - 1
        os.utime(path, (then, then))
    else:
        write_claim(path, pid=os.getpid())
    assert read_claim(path).stale_reason(FAST) is not None
    with pytest.warns(UserWarning, match="taking over the stale claim"):
        held, _ = acquire(path, FAST)
    assert read_claim(path).pid == os.getpid()
    held.release()


@pytest.mark.parametrize("case", ["other host, fresh", "empty, fresh", "live pid"])
def test_live_claims_are_waited_for_then_time_out(tmp_path, case):
    path = tmp_path / "cell.claim"
    if case == "other host, fresh":
        write_claim(path, host="elsewhere", pid=1)
    elif case == "empty, fresh":
        path.write_text("")
    else:
        write_claim(path, pid=os.getppid())                # a live process on this host
    settings = ClaimSettings(stale_after_s=60, wait_s=0.3, poll_s=0.05)
    assert read_claim(path).stale_reason(settings) is None
    with pytest.raises(ClaimTimeout, match="waited") as raised:
        acquire(path, settings, what="cell x")
    assert isinstance(raised.value, CellSkipped)          # the plugin skips it; the grid goes on
    assert path.exists()                                   # a live claim is never removed


def test_release_never_removes_a_claim_that_is_not_ours(tmp_path):
    path = tmp_path / "cell.claim"
    held, _ = acquire(path, FAST)
    write_claim(path, host="elsewhere", pid=1, token="someone-else")
    held.release()
    assert read_claim(path).token == "someone-else"


def test_one_holder_at_a_time_when_many_race_for_a_stale_claim(tmp_path):
    """Eight racers, a stale claim to take over: never two inside at once."""
    path = write_claim(tmp_path / "cell.claim", pid=dead_pid())
    inside, peak, lock, errors = [0], [0], threading.Lock(), []

    def racer() -> None:
        try:
            held, _ = acquire(path, FAST)
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1
            held.release()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with pytest.warns(UserWarning, match="stale claim"):
        threads = [threading.Thread(target=racer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors and peak[0] == 1 and not path.exists()


# ---------------------------------------------------------------- get_or_run_cell under claims
@pytest.fixture(scope="module")
def small_clean():
    return clean(make_synthetic(900, seed=0))


@pytest.fixture
def spec_and_cell(small_clean):
    spec = ModelSpec(name="claimed", factory=BuildCountingNet, batch_size=32)
    cell = make_cell(spec, small_clean, config=resolve_config(spec, epochs=1))
    BuildCountingNet.built = 0
    return spec, cell


def test_a_claimed_cell_is_waited_for_and_read_not_trained(tmp_path, small_clean, spec_and_cell):
    spec, cell = spec_and_cell
    store = ResultStore(tmp_path, claims=FAST)
    trained, _ = get_or_run_cell(ResultStore(tmp_path / "elsewhere"), spec, small_clean, cell)
    BuildCountingNet.built = 0
    holding = threading.Event()

    def other_process() -> None:            # holds the claim, "trains" 1 s, writes the record
        with store.claim(cell) as written:
            assert written is None
            holding.set()
            time.sleep(1.0)
            store.put(trained)

    other = threading.Thread(target=other_process)
    other.start()
    holding.wait(10)
    start = time.monotonic()
    record, from_store = get_or_run_cell(store, spec, small_clean, cell)
    other.join()
    assert time.monotonic() - start > 0.5                  # it waited
    assert from_store and record == trained and BuildCountingNet.built == 0
    assert not store.claim_path(cell).exists() and store.claims() == []


def test_a_failure_written_while_waiting_is_returned_not_retrained(tmp_path, small_clean, spec_and_cell):
    spec, cell = spec_and_cell
    store = ResultStore(tmp_path, claims=FAST)
    failed, _ = get_or_run_cell(ResultStore(tmp_path / "elsewhere"), spec, small_clean, cell)
    failed.status, failed.error = "failed", "NaN loss at epoch 1"
    BuildCountingNet.built = 0
    holding = threading.Event()

    def other_process() -> None:
        with store.claim(cell):
            holding.set()
            time.sleep(0.5)
            store.put(failed)

    other = threading.Thread(target=other_process)
    other.start()
    holding.wait(10)
    record, from_store = get_or_run_cell(store, spec, small_clean, cell, rerun=True)
    other.join()
    assert from_store and record.status == "failed" and BuildCountingNet.built == 0
    # ... and a later call (nobody holds it now) retries the failed cell as before
    record, from_store = get_or_run_cell(store, spec, small_clean, cell)
    assert not from_store and record.status == "ok" and BuildCountingNet.built == 1


def test_claim_is_released_when_training_raises(tmp_path, small_clean, spec_and_cell, monkeypatch):
    spec, cell = spec_and_cell
    store = ResultStore(tmp_path, claims=FAST)
    from fer_bench.results import run as results_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(results_run, "build_task_data", interrupted)
    with pytest.raises(KeyboardInterrupt):
        get_or_run_cell(store, spec, small_clean, cell)
    assert not store.claim_path(cell).exists() and store.get(cell) is None


def test_stale_claim_after_kill_9_is_taken_over(tmp_path, small_clean, spec_and_cell):
    """A process holding the cell's claim is killed with SIGKILL: the claim stays behind,
    the next caller sees its process is gone, takes it over and trains the cell."""
    spec, cell = spec_and_cell
    store = ResultStore(tmp_path, claims=ClaimSettings(stale_after_s=3600, wait_s=20, poll_s=0.05))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom fer_bench.results.claims import ClaimSettings, acquire\n"
         "acquire(Path(sys.argv[1]), ClaimSettings())\nprint('held', flush=True)\ntime.sleep(120)\n",
         str(store.claim_path(cell))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert read_claim(store.claim_path(cell)).pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    info = read_claim(store.claim_path(cell))
    assert info.pid == holder.pid and "is gone" in info.stale_reason(store.claim_settings)
    with pytest.warns(UserWarning, match=f"process {holder.pid} on .* is gone"):
        record, from_store = get_or_run_cell(store, spec, small_clean, cell)
    assert not from_store and record.status == "ok" and BuildCountingNet.built == 1
    assert store.claims() == [] and store.get(cell) == record


# ---------------------------------------------------------------- real processes, one store
@pytest.fixture
def project(tmp_path):
    return launch_grid.make_project(tmp_path / "project")


def test_two_processes_on_one_store_train_each_cell_once(project, tmp_path):
    """Two pytest processes run the same 4-cell grid on one store at once, from opposite
    ends (models in opposite order; the slow model's cells take >= 1 s): every cell is
    trained exactly once, and each process reports all four."""
    store = tmp_path / "store"
    env = launch_grid.project_env(project, LAUNCH_SLOW_S="1.0")
    grid = ("--fer-nhot", "1", "--fer-splits", "ordinary,complex", "--fer-results", str(store))
    runs = [subprocess.Popen(launch_grid.pytest_command("--fer-models", models, *grid,
                                                        "--benchmark-json", str(tmp_path / f"{n}.json")),
                             cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
            for n, models in (("a", "launch_slow,launch_tiny"), ("b", "launch_tiny,launch_slow"))]
    outputs = [run.communicate(timeout=150)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    built = launch_grid.builds(project)
    assert sorted(built) == ["launch_slow"] * 2 + ["launch_tiny"] * 2      # 4 cells, once each
    a, b = (launch_grid.entries(tmp_path / f"{n}.json") for n in "ab")
    assert sorted(a) == sorted(b) and len(a) == 4
    for cell_id in a:                                       # exactly one of the two trained it
        assert sorted([a[cell_id]["from_store"], b[cell_id]["from_store"]]) == [False, True]
        assert a[cell_id]["fer_bench"] == b[cell_id]["fer_bench"]     # the same record
    assert ResultStore(store).claims() == [] and len(ResultStore(store).records()) == 4


@pytest.fixture
def killed_mid_cell(project, tmp_path):
    """A grid of 4 slow cells killed with SIGKILL while its third cell trains."""
    store = tmp_path / "store"
    env = launch_grid.project_env(project, LAUNCH_SLOW_S="3")
    args = ("--fer-models", "launch_slow", "--fer-nhot", "1,8", "--fer-splits", "ordinary,complex",
            "--fer-results", str(store))
    run = subprocess.Popen(launch_grid.pytest_command(*args), cwd=project, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shared = ResultStore(store)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:      # third cell claimed and its model built
            if len(list(store.glob("*/*.json"))) == 2 and len(launch_grid.builds(project)) == 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never reached its third cell")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    return project, store, shared, args, env


def test_sigkill_mid_cell_then_rerun(killed_mid_cell, tmp_path):
    project, store, shared, args, env = killed_mid_cell
    # Nothing corrupt: the two finished records read back, the killed cell left a stale claim.
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no "unreadable, moved aside"
        finished = shared.records()
    assert len(finished) == 2 and all(r.status == "ok" for r in finished)
    assert not list(store.rglob("*.corrupt*"))
    [claim] = shared.claims()
    assert "is gone" in claim.stale_reason(shared.claim_settings)
    assert launch_grid.builds(project) == ["launch_slow"] * 3
    # Rerun: the finished cells come from the store, the killed one and the last one train.
    out = tmp_path / "rerun.json"
    result = subprocess.run(launch_grid.pytest_command(*args, "--benchmark-json", str(out)),
                            cwd=project, env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr
    reported = launch_grid.entries(out)
    reused = {cell_id for cell_id, extra in reported.items() if extra["from_store"]}
    assert reused == {r.cell_id for r in finished} and len(reported) == 4
    assert launch_grid.builds(project) == ["launch_slow"] * 5        # 2 before + 2 now, not 4
    assert shared.claims() == [] and len(shared.records()) == 4
    assert {r.cell_id: r for r in shared.records() if r.cell_id in reused} == \
        {r.cell_id: r for r in finished}

