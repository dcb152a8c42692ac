"""Helpers of the real-engine tests (tests/launch/test_launch_slurm.py, tests/launch/test_launch_ray.py):
tests/helpers/launch_grid.py's project plus ``launch_stall``, a model that sleeps
``$LAUNCH_STALL_S`` seconds when built in shard ``$LAUNCH_STALL_SHARD`` (e.g. "2/2"): a cell
that is caught mid-run, in one shard only; and ``launch_lag`` (``LAG``), which sleeps
``$LAUNCH_LAG_S`` per training forward pass, so its epochs last long enough to be caught
(the sleep changes no number)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import launch_grid

STALL = '''

def launch_stall(num_classes=8, in_chans=1):
    if SHARD["value"] and SHARD["value"] == os.environ.get("LAUNCH_STALL_SHARD"):
        time.sleep(float(os.environ.get("LAUNCH_STALL_S", "0")))
    _built("launch_stall")
    return Tiny(num_classes, in_chans)


unregister_model("launch_stall")
register_model(launch_stall)
'''
LAG = '''

class Lag(Tiny):
    def forward(self, x):
        if self.training:
            time.sleep(float(os.environ.get("LAUNCH_LAG_S", "0")))
        return super().forward(x)


def launch_lag(num_classes=8, in_chans=1):
    _built("launch_lag")
    return Lag(num_classes, in_chans)


unregister_model("launch_lag")
register_model(launch_lag)
'''
#: Two cells of the built-in small CNN (1-hot and 8-hot), one per shard of 2.
SMALL = ("--fer-models", "small_cnn", "--fer-nhot", "1,8", "--fer-splits", "ordinary")
#: Collection order: tiny-ordinary, tiny-complex, stall-ordinary, stall-complex; shard 2/2
#: takes the 2nd and 4th: launch_tiny-n1-complex, then launch_stall-n1-complex (stalls).
STALLING = ("--fer-models", "launch_tiny,launch_stall", "--fer-nhot", "1",
            "--fer-splits", "ordinary,complex")
STALL_CELL = "test_grid.py::test_grid[launch_stall-n1-complex-s0]"
#: One ``launch_lag`` cell of 12 epochs; at ``LAG_S`` per training batch an epoch lasts ~5 s,
#: so its training (~60 s) outlives a 1-minute Slurm limit's signal (20-50 s after the start).
LAG_CELL = ("--fer-models", "launch_lag", "--fer-nhot", "1", "--fer-splits", "ordinary",
            "--fer-epochs", "12")
LAG_S = "0.1"
_REFERENCE: dict[str, Path] = {}


def make_stall_project(root: Path) -> Path:
    """tests/helpers/launch_grid.py's project in ``root``, with ``launch_stall`` and
    ``launch_lag`` registered too."""
    launch_grid.make_project(root)
    with open(root / "conftest.py", "a") as fh:
        fh.write(STALL + LAG)
    return root


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` every 0.5 s until it is true; AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def cell_started(run_dir: Path, index: int, nodeid: str) -> bool:
    """Whether shard ``index``'s probe has logged the start of cell ``nodeid``."""
    path = run_dir / "shards" / f"shard-{index}.events.jsonl"
    if not path.exists():
        return False
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return any(e.get("event") == "start" and e.get("nodeid") == nodeid for e in events)


def small_reference(tmp_path_factory: Any) -> Path:
    """The pytest-benchmark JSON of ``SMALL`` run as one plain pytest process, made once per
    test session (the Slurm and the Ray tests both compare their shards with it)."""
    if "json" not in _REFERENCE:
        root = make_stall_project(tmp_path_factory.mktemp("reference") / "project")
        out = root.parent / "single.json"
        single = launch_grid.run_pytest(root, *SMALL, "--fer-results", str(root.parent / "store"),
                                        "--benchmark-json", str(out), timeout=300)
        assert single.returncode == 0, single.stdout + single.stderr
        _REFERENCE["json"] = out
    return _REFERENCE["json"]
