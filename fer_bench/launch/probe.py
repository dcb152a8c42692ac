"""The pytest plugin ``fer-bench launch`` loads into every shard (``-p fer_bench.launch.probe``).

Inactive unless ``--fer-launch-dir RUN_DIR`` is given. Then it writes, for shard
``--fer-launch-shard i``:

* ``shards/shard-<i>.plan.json`` once collection ends: every fer_bench cell collected, in
  collection order (``all``: the whole grid, before ``--fer-shard`` keeps its part) and the
  cells this shard keeps (``mine``);
* ``shards/shard-<i>.events.jsonl``: one line when a cell starts, one when it finishes
  (outcome, cell id, store key, status, whether it came from the store; the record itself
  for a cell that failed before its first epoch, which pytest-benchmark keeps no entry for).

With ``$FER_BENCH_LAUNCH_PARENT`` (set by ``run_shard`` to its own pid) the process asks
Linux to SIGKILL it when that parent dies (``PR_SET_PDEATHSIG``): the wrapper publishes the
shard's results, so a pytest that outlived it (a killed Ray worker) could only train on
unseen. ``--fer-launch-memory-fraction F`` caps this process's CUDA caching allocator at ``F`` of
every visible GPU (``torch.cuda.set_per_process_memory_fraction``): the Ray engine's
fractional GPUs, where several shards share one device.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fer_bench.results.rundir import atomic_append_line, shard_file, write_json

CELL_FIXTURE = "fer_cell"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fer_bench launch", "set by fer-bench launch (one shard of a run)")
    group.addoption("--fer-launch-dir", default=None, help="run folder of this shard")
    group.addoption("--fer-launch-shard", type=int, default=None, help="this shard's index i")
    group.addoption("--fer-launch-memory-fraction", type=float, default=None,
                    help="cap the CUDA allocator at this fraction of each visible GPU")
    group.addoption("--fer-launch-plan", default=None,
                    help="write the collected cells and their plan to this JSON file")


def pytest_configure(config: pytest.Config) -> None:
    parent = os.environ.get("FER_BENCH_LAUNCH_PARENT", "")
    if parent.isdigit():
        die_with_parent(int(parent))
    run_dir = config.getoption("fer_launch_dir", default=None)
    plan = config.getoption("fer_launch_plan", default=None)
    if plan:
        config.pluginmanager.register(PlanProbe(Path(plan)), "fer_bench_launch_plan")
    fraction = config.getoption("fer_launch_memory_fraction", default=None)
    if fraction:
        cap_gpu_memory(float(fraction))
    if run_dir:
        index = config.getoption("fer_launch_shard") or 1
        config.pluginmanager.register(ShardProbe(Path(run_dir), int(index)), "fer_bench_launch_probe")


def die_with_parent(parent: int) -> bool:
    """SIGKILL this process when ``parent`` dies (Linux ``prctl(PR_SET_PDEATHSIG)``); kill it
    now when ``parent`` is already gone. False where the platform cannot (nothing is done)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:       # 1 = PR_SET_PDEATHSIG
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:          # the parent died before the request was made?
        from fer_bench.results.claims import pid_alive

        if not pid_alive(parent):
            os.kill(os.getpid(), signal.SIGKILL)
    return True


def cap_gpu_memory(fraction: float) -> list[int]:
    """Cap every visible CUDA device at ``fraction`` of its memory; returns the devices."""
    if not 0 < fraction <= 1:
        raise pytest.UsageError(f"--fer-launch-memory-fraction: need 0 < F <= 1, got {fraction}")
    import torch

    if not torch.cuda.is_available():
        return []
    devices = list(range(torch.cuda.device_count()))
    for device in devices:
        torch.cuda.set_per_process_memory_fraction(fraction, device)
    return devices


class ShardProbe:
    """Writes the shard's plan and cell events (see the module docstring)."""

    def __init__(self, run_dir: Path, index: int) -> None:
        self.run_dir, self.index = run_dir, index
        self.events = shard_file(run_dir, index, "events.jsonl")
        self.all: list[str] = []
        self.mine: set[str] = set()

    def _event(self, **fields: Any) -> None:
        fields.update(time=time.time(), pid=os.getpid())
        atomic_append_line(self.events, json.dumps(fields, sort_keys=True))

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.all = [item.nodeid for item in items if CELL_FIXTURE in getattr(item, "fixturenames", ())]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        mine = [item.nodeid for item in session.items
                if CELL_FIXTURE in getattr(item, "fixturenames", ())]
        self.mine = set(mine)
        write_json(shard_file(self.run_dir, self.index, "plan.json"),
                   {"shard": self.index, "all": self.all, "mine": mine})
        self._event(event="session", cells=len(mine))

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if nodeid in self.mine:
            self._event(event="start", nodeid=nodeid)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        outcome = yield
        report = outcome.get_result()
        if item.nodeid not in self.mine:
            return
        if not (call.when == "call" or (call.when == "setup" and report.outcome != "passed")):
            return
        from fer_bench.pytest.keys import RECORD

        stored = item.stash.get(RECORD, None)
        event: dict[str, Any] = {"event": "finish", "nodeid": item.nodeid, "outcome": report.outcome}
        if stored is not None:
            record, from_store = stored
            cell = record.cell
            event.update(cell_id=record.cell_id, status=record.status, from_store=bool(from_store),
                         key=f"{cell.folder_name()}/{cell.file_name()}")
            if not record.epoch_times_s:
                event["record"] = record.to_dict()
        self._event(**event)


class PlanProbe:
    """``--fer-launch-plan PATH``: the check ``fer-bench launch`` runs before any shard
    (``pytest --collect-only`` of the whole selection). Once collection ends it writes
    ``{"cells": [node ids], "plan": Plan.to_dict() or None, "lines": [...]}`` to PATH: every
    fer_bench cell collected and the plugin's plan of them (``fer_bench.pytest.plan``: cells
    to train and from the store, epochs, device, precision, estimated time; as
    ``--fer-plan`` asks). A plan that cannot be made is one line in ``lines``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        cells = [item for item in session.items
                 if CELL_FIXTURE in getattr(item, "fixturenames", ())]
        document: dict[str, Any] = {"cells": [item.nodeid for item in cells], "plan": None,
                                    "lines": []}
        if cells:
            from fer_bench.pytest.plugin import session_of

            state = session_of(session.config)
            if state.settings.plan != "off":
                from fer_bench.pytest.plan import PLAN_PREFIX, build_plan, plan_lines

                try:
                    plan = build_plan(state, cells, cost=state.settings.plan == "cost")
                    document.update(plan=plan.to_dict(), lines=plan_lines(plan))
                except Exception as exc:   # the launch goes on; its shards report the cause
                    document["lines"] = [f"{PLAN_PREFIX} not available ({type(exc).__name__}: "
                                         f"{' '.join(str(exc).split())})"]
        write_json(self.path, document)
