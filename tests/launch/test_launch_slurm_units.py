"""Slurm job states without accounting (``fer_bench.launch.slurm``), the launcher's own wait
for Slurm jobs (``slurm.wait_slurm``) and ``--status``'s Slurm verdict, with Slurm's
commands replaced by recorded answers (the real thing: tests/launch/test_launch_slurm.py)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fer_bench.launch import engines, slurm
from fer_bench.launch.shard import ShardTask, slurm_job_id
from fer_bench.launch.slurm import (
    JobState,
    parse_sacct,
    parse_squeue,
    query_states,
    state_from_stderr,
)
from fer_bench.launch.status import slurm_jobs, slurm_verdict
from fer_bench.results import rundir as layout
from fer_bench.results.rundir import ShardState

# What slurmstepd wrote into the stderr of jobs of CI's one-node Slurm 22.05.
CANCELLED = ("srun: got SIGCONT\nslurmstepd-vm: error: *** JOB 5 ON vm CANCELLED AT "
             "2026-12-06T16:54:42 ***\nsrun: forcing job termination\n")
TIMED_OUT = ("srun: Job step aborted: Waiting up to 12 seconds for job step to finish.\n"
             "slurmstepd-vm: error: *** JOB 4 ON vm CANCELLED AT 2026-12-06T16:55:40 DUE TO "
             "TIME LIMIT ***\nslurmstepd-vm: error: *** STEP 4.0 ON vm CANCELLED AT "
             "2026-12-06T16:55:40 DUE TO TIME LIMIT ***\n")


def test_parsers_read_squeue_sacct_and_slurmstepd_lines(tmp_path):
    assert parse_squeue("4_0|CANCELLED|None\n4_1|TIMEOUT|TimeLimit\n\n") == {
        "4_0": ("CANCELLED", "None"), "4_1": ("TIMEOUT", "TimeLimit")}
    assert parse_sacct("7_0|CANCELLED by 0\n7_0.batch|CANCELLED\n8|COMPLETED\n") == {
        "7_0": "CANCELLED", "8": "COMPLETED"}
    for text, state in ((CANCELLED, "CANCELLED"), (TIMED_OUT, "TIMEOUT"),
                        ("*** JOB 9 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO PREEMPTION ***",
                         "PREEMPTED"), ("Traceback: nothing from slurmstepd\n", None)):
        path = tmp_path / "err"
        path.write_text(text)
        assert state_from_stderr(path) == state
    assert state_from_stderr(tmp_path / "missing") is None


def fake_slurm(squeue: tuple[int, str, str], sacct: tuple[int, str, str] = (1, "", "disabled")):
    calls = []

    def run(command):
        calls.append(command)
        return squeue if command[0] == "squeue" else sacct
    return run, calls


def test_query_states_falls_back_from_squeue_to_sacct_to_stderr(tmp_path):
    (tmp_path / "5_0_0_log.err").write_text(CANCELLED)
    run, calls = fake_slurm((0, "4_1|TIMEOUT|TimeLimit\n4_2|PENDING|Priority\n", ""),
                            (1, "", "Slurm accounting storage is disabled"))
    states = query_states(["4_1", "4_2", "5_0", "6_0"],
                          {"5_0": tmp_path / "5_0_0_log.err", "6_0": tmp_path / "6_0_0_log.err"}, run)
    assert [c[0] for c in calls] == ["squeue", "sacct"]            # one call each, for all jobs
    assert calls[0][-1] == "4_1,4_2,5_0,6_0" and calls[1][-1] == "5_0,6_0"
    assert (states["4_1"].state, states["4_1"].source, states["4_1"].failed) == ("TIMEOUT", "squeue", True)
    assert states["4_2"].queued and states["4_2"].live and not states["4_2"].ended
    assert (states["5_0"].state, states["5_0"].source) == ("CANCELLED", "stderr")
    assert states["6_0"].state == "UNKNOWN" and not states["6_0"].live
    assert "no accounting" in states["6_0"].describe()
    assert states["4_2"].describe() == "Slurm job 4_2 PENDING (Priority)"


def test_query_states_with_accounting_and_with_an_unreachable_controller():
    run, _ = fake_slurm((1, "", "slurm_load_jobs error: Invalid job id specified"),
                        (0, "7_0|CANCELLED by 0\n7_0.batch|CANCELLED\n", ""))
    assert query_states(["7_0"], run=run)["7_0"] == JobState("7_0", "CANCELLED", "sacct")
    # squeue cannot reach slurmctld: the job may still run, so it counts as live
    run, _ = fake_slurm((1, "", "slurm_load_jobs error: Unable to contact slurm controller"))
    state = query_states(["7_0"], run=run)["7_0"]
    assert state.state == "UNREACHABLE" and state.live and "Unable to contact" in state.reason


def test_slurm_job_id_names_array_tasks_as_squeue_does():
    assert slurm_job_id({"SLURM_JOB_ID": "13", "SLURM_ARRAY_JOB_ID": "12",
                         "SLURM_ARRAY_TASK_ID": "1"}) == "12_1"
    assert slurm_job_id({"SLURM_JOB_ID": "13"}) == "13"
    assert slurm_job_id({}) is None


def shard(state: str, detail: str = "", slurm_job: str = "", index: int = 2) -> ShardState:
    return ShardState(index, state, detail, Path("shard.json"), Path("shard.log"), slurm_job=slurm_job)


def test_slurm_has_the_last_word_on_unfinished_shards():
    cancelled = JobState("4_1", "CANCELLED", "squeue")
    # its files still say running (processes being stopped): failed, with the Slurm state
    verdict = slurm_verdict(shard("running", "running on vm (pid 9)", "4_1"), cancelled)
    assert verdict.state == "failed" and verdict.detail.startswith("Slurm job 4_1 CANCELLED")
    # its wrapper wrote the exit code: both are told
    verdict = slurm_verdict(shard("failed", "exit -15 (killed by SIGTERM)", "4_1"),
                            JobState("4_1", "TIMEOUT", "squeue", "TimeLimit"))
    assert verdict.detail.startswith("Slurm job 4_1 TIMEOUT (TimeLimit); exit -15")
    # cancelled before it started: no files of its own
    verdict = slurm_verdict(shard("missing", "not started"), JobState("4_1", "CANCELLED", "sacct"))
    assert verdict.state == "failed" and "never started" in verdict.detail
    # queued (a --resume's new job, the old attempt's files say failed): not relaunched again
    verdict = slurm_verdict(shard("failed", "exit -15", "3_1"), JobState("4_1", "PENDING", "squeue", "Priority"))
    assert verdict.state == "running" and verdict.detail == "queued: Slurm job 4_1 PENDING (Priority)"
    # done stays done; UNKNOWN changes nothing
    assert slurm_verdict(shard("done", "done", "4_1"), cancelled).state == "done"
    assert slurm_verdict(shard("missing", "not started"), JobState("4_1", "UNKNOWN", "none")).state == "missing"


def test_slurm_jobs_come_from_the_manifest_then_the_state_files():
    shards = [shard("failed", "", "12_0", index=1), shard("missing", "", "", index=2)]
    manifest = {"engine": "submitit", "engine_options": {"cluster": "slurm"}, "jobs": {"2": "14_1"}}
    assert slurm_jobs(manifest, shards) == {1: "12_0", 2: "14_1"}
    local = {"engine": "submitit", "engine_options": {"cluster": "local"}, "jobs": {"2": "4242"}}
    assert slurm_jobs(local, shards) == {1: "12_0"}       # local executor ids are not Slurm's


def wait(pairs, lines: list[str], start: float, poll_s: float) -> dict:
    """``slurm.wait_slurm`` as the submitit engine calls it, its lines into ``lines``."""
    return slurm.wait_slurm(
        pairs, outcome=engines._job_outcome, start=start, poll_s=poll_s, report=lines.append,
        finished=lambda t, c, s, n: engines._finished(lines.append, t, c, s, n))


class FakeJob:
    """A submitit job as ``wait_slurm`` sees it: an id, a result file, a stderr file."""

    def __init__(self, folder: Path, job_id: str, code: int | None) -> None:
        self.job_id, self.code = job_id, code
        self.paths = SimpleNamespace(result_pickle=folder / f"{job_id}_result.pkl",
                                     stderr=folder / f"{job_id}_0_log.err")

    def finish(self) -> None:
        self.paths.result_pickle.write_text("done")

    def result(self) -> int:
        return self.code


def test_wait_slurm_reports_a_job_that_ends_without_result_within_bounded_time(tmp_path, monkeypatch):
    jobs = [FakeJob(tmp_path, "4_0", 0), FakeJob(tmp_path, "4_1", None),
            FakeJob(tmp_path, "4_2", -15)]
    jobs[0].finish()
    jobs[2].finish()
    answers = {"4_1": JobState("4_1", "CANCELLED", "squeue"),
               "4_2": JobState("4_2", "TIMEOUT", "squeue", "TimeLimit")}
    asked = []

    def states(ids, stderr):
        asked.append(sorted(ids))
        return {j: answers.get(j, JobState(j, "COMPLETED", "squeue")) for j in ids}

    monkeypatch.setattr(slurm, "query_states", states)
    monkeypatch.setattr(slurm, "SETTLE_S", 60.0)         # not waited for: Slurm says CANCELLED
    monkeypatch.setattr(slurm, "FAILED_SETTLE_S", 1.0)
    tasks = [ShardTask(str(tmp_path), i, 3) for i in (1, 2, 3)]
    lines: list[str] = []
    start = time.monotonic()
    results = wait(list(zip(tasks, jobs, strict=True)), lines, start, poll_s=0.5)
    assert time.monotonic() - start < 10
    assert results == {1: 0, 2: None, 3: -15}
    text = "\n".join(lines)
    assert "shard 1/3 finished: exit 0 (" in text
    assert "shard 2/3 finished: lost by the engine: Slurm job 4_1 CANCELLED" in text
    assert "shard 3/3 finished: exit -15 (killed by SIGTERM); Slurm job 4_2 TIMEOUT (TimeLimit)" in text
    assert asked[0] == ["4_0", "4_1", "4_2"]


def test_wait_slurm_reports_a_task_cancelled_while_pending(tmp_path, monkeypatch):
    """A pending array task that is cancelled vanishes from slurmctld (no record, no stderr):
    UNKNOWN, reported once SETTLE_S brought no result file, not waited for forever."""
    job = FakeJob(tmp_path, "4_3", None)
    monkeypatch.setattr(slurm, "run_command", lambda command: (
        (1, "", "slurm_load_jobs error: Invalid job id specified") if command[0] == "squeue"
        else (1, "", "Slurm accounting storage is disabled")))
    monkeypatch.setattr(slurm, "SETTLE_S", 0.5)
    lines: list[str] = []
    assert wait([(ShardTask(str(tmp_path), 4, 4), job)], lines, time.monotonic(), poll_s=0.2) == {4: None}
    assert "shard 4/4 finished: lost by the engine: Slurm job 4_3 UNKNOWN (slurmctld no longer " \
           "holds it and there is no accounting" in lines[-1]


def test_wait_slurm_keeps_waiting_while_slurm_cannot_be_asked(tmp_path, monkeypatch):
    job = FakeJob(tmp_path, "4_0", 0)
    answers = iter([JobState("4_0", "UNREACHABLE", "none", "Unable to contact slurm controller")] * 3)

    def states(ids, stderr):
        try:
            return {"4_0": next(answers)}
        except StopIteration:           # the controller is back and the job has finished
            job.finish()
            return {"4_0": JobState("4_0", "COMPLETED", "squeue")}

    monkeypatch.setattr(slurm, "query_states", states)
    monkeypatch.setattr(slurm, "SETTLE_S", 0.1)
    lines: list[str] = []
    results = wait([(ShardTask(str(tmp_path), 1, 1), job)], lines, time.monotonic(), poll_s=0.2)
    assert results == {1: 0}
    assert sum("cannot ask Slurm" in line for line in lines) == 1       # said once, not per poll


def test_ray_shards_get_the_launchers_environment():
    env = engines.ray_environment({"PATH": "/bin", "FER_BENCH_CACHE": "/c", "RAY_ADDRESS": "x",
                                   "CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "1"})
    assert env == {"PATH": "/bin", "FER_BENCH_CACHE": "/c", "OMP_NUM_THREADS": "1"}


def test_a_slurm_shard_ignores_submitits_time_limit_warning(tmp_path, monkeypatch):
    """In a Slurm job, run_shard records its job and its pytest ignores SIGUSR2 (which would
    otherwise kill it 90 s before the time limit); outside Slurm nothing changes."""
    import signal
    import sys

    run = tmp_path / "run"
    layout.write_json(layout.manifest_path(run), {
        "shards": 1, "store": str(tmp_path / "store"), "cwd": str(tmp_path), "python": sys.executable,
        "pytest_args": []})
    probe = tmp_path / "probe.py"
    probe.write_text("import os, signal, sys\n"
                     "print(signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN, "
                     "os.environ['FER_BENCH_LAUNCH_PARENT'] == str(os.getppid()))\n"
                     "sys.exit(5)\n")
    monkeypatch.setattr("fer_bench.launch.shard.shard_command",
                        lambda manifest, task: [sys.executable, str(probe)])
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        from fer_bench.launch.shard import run_shard

        monkeypatch.setenv("SLURM_JOB_ID", "13")
        monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12")
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
        assert run_shard(ShardTask(str(run), 1, 1)) == 5
        log = layout.shard_log(run, 1).read_text()
        assert "True True" in log
        assert "SIGUSR2 (submitit's time-limit warning) is ignored; SIGTERM before the time " \
               "limit stops the cell at a safe point" in log
        assert layout.read_json(layout.shard_file(run, 1, "state.json"))["slurm_job"] == "12_0"
    finally:
        signal.signal(signal.SIGUSR2, previous)
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name)
    from fer_bench.launch.shard import run_shard

    assert run_shard(ShardTask(str(run), 1, 1)) == 5
    assert layout.shard_log(run, 1).read_text().count("False True") == 1
    assert signal.getsignal(signal.SIGUSR2) == previous


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="Linux only (PR_SET_PDEATHSIG)")
def test_a_shards_pytest_dies_with_its_wrapper(tmp_path):
    """The probe's die_with_parent: a child whose parent is SIGKILLed is killed too."""
    import subprocess
    import sys

    script = tmp_path / "family.py"
    script.write_text(
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import os, time\\n"
        "from fer_bench.launch.probe import die_with_parent\\n"
        "die_with_parent(os.getppid()); print(os.getpid(), flush=True); time.sleep(60)'],"
        " stdout=subprocess.PIPE, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(timeout=10)
        from fer_bench.results.claims import pid_alive

        deadline = time.monotonic() + 10
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()


# ---------------------------------------------------------------- time limits and requeues
@pytest.mark.parametrize(("code", "state", "requeued"), [
    (75, "COMPLETED", "exit 75"),           # the cell checkpointed on Slurm's SIGTERM
    (75, None, "exit 75"),
    (None, "TIMEOUT", "Slurm state TIMEOUT"),   # did not stop in time: killed at the limit
    (-9, "TIMEOUT", "Slurm state TIMEOUT, exit -9"),
    (None, "PREEMPTED", "Slurm state PREEMPTED"),
    (None, "NODE_FAIL", "Slurm state NODE_FAIL"),
    (-15, "COMPLETED", "killed by SIGTERM"),     # the signal came between two cells
    (-10, "UNKNOWN", "killed by SIGUSR1"),
    # not requeued: a person's scancel, pytest's own end, other failures
    (75, "CANCELLED", None), (-15, "CANCELLED", None), (None, "CANCELLED", None),
    (0, "TIMEOUT", None), (1, "COMPLETED", None), (5, "COMPLETED", None),
    (2, "COMPLETED", None), (4, "COMPLETED", None), (-9, "COMPLETED", None),
    (None, "FAILED", None), (None, "OUT_OF_MEMORY", None), (None, "UNKNOWN", None),
])
def test_which_endings_are_requeued(code, state, requeued):
    from fer_bench.launch.requeue import requeue_reason

    reason = requeue_reason(code, state)
    assert (reason is None) == (requeued is None), reason
    if requeued:
        assert requeued in reason


def test_the_time_limit_signal_and_its_lead():
    from fer_bench.errors import ConfigError
    from fer_bench.launch.engines import SubmititEngine, make_engine
    from fer_bench.launch.requeue import signal_lead_s

    # 10 % of the limit, at least 10 s, at most 180 s
    assert [signal_lead_s(m) for m in (1, 2, 5, 10, 30, 240, 720)] == [10, 12, 30, 60, 180, 180, 180]
    engine = SubmititEngine(time_min=1)
    assert engine.slurm_parameters(2)["additional_parameters"] == {"signal": "TERM@10"}
    assert SubmititEngine(time_min=60, signal_lead_s=300).lead_s == 300
    pytest.importorskip("submitit")
    preview = engine.preview(2)
    assert "#SBATCH --signal=TERM@10" in preview and "USR2" not in preview
    assert make_engine("submitit", {"max_requeues": 0}).max_requeues == 0
    with pytest.raises(ConfigError, match="--max-requeues: give a whole number >= 0, got -1"):
        make_engine("submitit", {"max_requeues": -1})
    with pytest.raises(ConfigError, match=r"--signal-lead-s: .*below the time limit \(60 s\), got 60"):
        make_engine("submitit", {"time_min": 1, "signal_lead_s": 60})


def test_requeue_options_belong_to_the_submitit_engine(tmp_path, capsys):
    from fer_bench.cli.main import main

    assert main(["launch", "--max-requeues", "2", "--run-dir", str(tmp_path / "r"), "--", "x"]) == 2
    assert "--max-requeues is an option of the submitit engine, not of local" in capsys.readouterr().err
    pytest.importorskip("submitit")
    code = main(["launch", "--dry-run", "--engine", "submitit", "--shards", "2", "--time-min",
                 "60", "--signal-lead-s", "300", "--max-requeues", "5", "--run-dir",
                 str(tmp_path / "r"), "--", "benchmarks/"])
    out = capsys.readouterr().out
    assert code == 0 and "#SBATCH --signal=TERM@300" in out
    assert "'max_requeues': 5, 'signal_lead_s': 300" in out and "requeued up to 5 times" in out


def slurm_run(root: Path, shards: int) -> Path:
    run = root / "run"
    layout.write_json(layout.manifest_path(run), {
        "format": 1, "shards": shards, "engine": "submitit", "store": str(root / "store"),
        "engine_options": {"cluster": "slurm"}, "pytest_args": [],
        "jobs": {str(i): f"4_{i - 1}" for i in range(1, shards + 1)}})
    return run


def test_preempted_and_timed_out_shards_are_resubmitted_up_to_the_bound(tmp_path, monkeypatch):
    """wait_slurm with the engine's Requeuer and a fake Slurm: shard 1 exits 75 (its cell
    checkpointed on the signal) and its new job finishes; shard 2 times out every time and
    is requeued twice (--max-requeues 2), then reported lost; shard 3 is cancelled and shard
    4 fails (exit 1): neither is requeued. The manifest records each requeue and names the
    new jobs; --status lists them."""
    from fer_bench.launch.requeue import Requeuer, requeues
    from fer_bench.launch.status import RunStatus, format_status

    run = slurm_run(tmp_path, 4)
    ends = {"4_0": (75, "COMPLETED"), "4_1": (None, "TIMEOUT"), "4_2": (-15, "CANCELLED"),
            "4_3": (1, "COMPLETED"), "10": (0, "COMPLETED"), "11": (None, "TIMEOUT"),
            "12": (None, "TIMEOUT")}
    jobs = {job_id: FakeJob(tmp_path, job_id, code) for job_id, (code, _) in ends.items()}
    for job in jobs.values():
        if job.code is not None:
            job.finish()
    monkeypatch.setattr(slurm, "query_states", lambda ids, stderr: {
        j: JobState(j, ends[j][1], "squeue", "TimeLimit" if ends[j][1] == "TIMEOUT" else "")
        for j in ids})
    monkeypatch.setattr(slurm, "SETTLE_S", 0.3)
    monkeypatch.setattr(slurm, "FAILED_SETTLE_S", 0.3)
    new_ids = iter(["10", "11", "12"])
    submitted: list[int] = []

    def submit(task):
        submitted.append(task.index)
        return jobs[next(new_ids)]

    lines: list[str] = []
    requeuer = Requeuer(run, 2, submit, lines.append)
    tasks = [ShardTask(str(run), i, 4) for i in (1, 2, 3, 4)]
    start = time.monotonic()
    results = slurm.wait_slurm(
        list(zip(tasks, [jobs[f"4_{i}"] for i in range(4)], strict=True)),
        outcome=engines._job_outcome, start=start, poll_s=0.2, report=lines.append,
        finished=lambda t, c, s, n: engines._finished(lines.append, t, c, s, n), requeue=requeuer)
    assert time.monotonic() - start < 20
    assert results == {1: 0, 2: None, 3: -15, 4: 1}
    assert sorted(submitted) == [1, 2, 2] and requeuer.counts == {1: 1, 2: 2}
    text = "\n".join(lines)
    assert "shard 1/4 requeued (1 of at most 2)" in text and "Slurm job 4_0 ended with exit 75" in text
    assert "resubmitted as Slurm job 10; it continues from the store and its checkpoints" in text
    assert "shard 2/4 requeued (2 of at most 2)" in text and "Slurm state TIMEOUT" in text
    assert "shard 2/4 not requeued: Slurm job 12 ended with Slurm state TIMEOUT, and it was " \
           "requeued 2 time(s) in this launch already (--max-requeues 2)" in text
    assert "shard 2/4 finished: lost by the engine: Slurm job 12 TIMEOUT" in text
    assert "shard 3/4 finished: exit -15 (killed by SIGTERM); Slurm job 4_2 CANCELLED" in text
    assert "shard 4/4 finished: exit 1" in text and "shard 3/4 requeued" not in text
    assert sum("requeued (" in line for line in lines) == 3           # one line per requeue

    manifest = layout.read_manifest(run)
    assert manifest["jobs"] == {"1": "10", "2": "12", "3": "4_2", "4": "4_3"}
    entries = requeues(manifest)
    assert [(e["shard"], e["job"], e["new_job"], e["count"], e["code"], e["state"]) for e in entries] == [
        (1, "4_0", "10", 1, 75, "COMPLETED"), (2, "4_1", "11", 1, None, "TIMEOUT"),
        (2, "11", "12", 2, None, "TIMEOUT")]
    shards = [shard("done", "done", index=1), shard("failed", "lost", "12", index=2),
              shard("failed", "cancelled", index=3), shard("failed", "exit 1", index=4)]
    status = RunStatus(run, manifest, shards)
    out = format_status(status)
    assert "shard 2/4: failed: lost, job 12; requeued 2 time(s)" in out
    assert "requeues: 3\n  shard 1/4 requeued (1 of at most 2) at " in out
    assert out.count(" requeued (") == 3
    details = {d["index"]: d["requeues"] for d in status.to_dict()["shard_details"]}
    assert details == {1: 1, 2: 2, 3: 0, 4: 0} and len(status.to_dict()["requeues"]) == 3
