"""The pytest plugin ``fer-bench launch`` loads into every shard (``-p fer_bench.launch.probe``).

Inactive unless ``--fer-launch-dir RUN_DIR`` is given. Then it writes, for shard
``--fer-launch-shard i``:

* ``shards/shard-<i>.plan.json`` once collection ends: every fer_bench cell collected, in
  collection order (``all``: the whole grid, before ``--fer-shard`` keeps its part) and the
  cells this shard keeps (``mine``);
* ``shards/shard-<i>.events.jsonl``: one line when a cell starts, one when it finishes
  (outcome, cell id, store key, status, whether it came from the store; the record itself
  for a cell that failed before its first epoch, which pytest-benchmark keeps no entry for).

``--fer-launch-memory-fraction F`` caps this process's CUDA caching allocator at ``F`` of
every visible GPU (``torch.cuda.set_per_process_memory_fraction``): the Ray engine's
fractional GPUs, where several shards share one device.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from fer_bench.launch.layout import atomic_append_line, shard_file, write_json

CELL_FIXTURE = "fer_cell"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fer_bench launch", "set by fer-bench launch (one shard of a run)")
    group.addoption("--fer-launch-dir", default=None, help="run folder of this shard")
    group.addoption("--fer-launch-shard", type=int, default=None, help="this shard's index i")
    group.addoption("--fer-launch-memory-fraction", type=float, default=None,
                    help="cap the CUDA allocator at this fraction of each visible GPU")


def pytest_configure(config: pytest.Config) -> None:
    run_dir = config.getoption("fer_launch_dir", default=None)
    fraction = config.getoption("fer_launch_memory_fraction", default=None)
    if fraction:
        cap_gpu_memory(float(fraction))
    if run_dir:
        index = config.getoption("fer_launch_shard") or 1
        config.pluginmanager.register(ShardProbe(Path(run_dir), int(index)), "fer_bench_launch_probe")


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
        from fer_bench.plugin import RECORD

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
