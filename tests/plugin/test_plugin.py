"""The fer_bench pytest plugin end to end, through pytest itself (``pytester``, in process).

A tiny model and a model whose loss turns NaN are registered in-process by a conftest in
the pytester folder; the data is a small FERPlus folder written from the synthetic faces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Imported before any in-process pytest run: pytester restores sys.modules after each run,
# and torch (incl. torch._dynamo, which the optimizer imports lazily) cannot be imported
# twice in one process.
import torch
import torch._dynamo  # noqa: F401

import fer_bench.models
import fer_bench.training.runner  # noqa: F401
from fer_bench.pytest.fixture import feed_epoch_times
from tests.helpers.cells import BASE_ARGS

pytest_plugins = ["pytester"]

MODELS = ("plugin_tiny", "plugin_nan")
CONFTEST = """
import json, os
import torch
from fer_bench.models import register_model, unregister_model

TRAIN_BATCHES = {}  # model class -> training batches run in this session


class TinyNet(torch.nn.Module):
    def __init__(self, num_classes=8, in_chans=1):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(6)
        self.fc = torch.nn.Linear(in_chans * 36, num_classes)

    def forward(self, x):
        if self.training:
            name = type(self).__name__
            TRAIN_BATCHES[name] = TRAIN_BATCHES.get(name, 0) + 1
        return self.fc(self.pool(x).flatten(1))


class NanNet(TinyNet):
    def forward(self, x):  # finite when the runner checks the output, NaN in training
        logits = super().forward(x)
        return logits * float("nan") if self.training else logits


def plugin_tiny(num_classes=8, in_chans=1):
    return TinyNet(num_classes, in_chans)


def plugin_nan(num_classes=8, in_chans=1):
    return NanNet(num_classes, in_chans)


for factory in (plugin_tiny, plugin_nan):
    unregister_model(factory.__name__)
    register_model(factory)


def pytest_sessionfinish(session):
    with open(os.environ["TRAIN_BATCHES_FILE"], "w") as fh:
        json.dump(TRAIN_BATCHES, fh)
"""
BENCH_MODULE = """
def test_grid(fer_cell, benchmark):
    record = fer_cell.run(benchmark)
    assert len(record.epoch_times_s) == record.epochs == fer_cell.config.epochs
"""


@pytest.fixture
def bench_dir(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_bench=BENCH_MODULE)
    monkeypatch.setenv("TRAIN_BATCHES_FILE", str(pytester.path / "train_batches.json"))
    # Tensors of the tiny model are far too small to gain from threads; on a busy machine
    # the thread pool's hand-offs cost ~100x the work. Restored after the test.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield pytester
    torch.set_num_threads(threads)
    for name in MODELS:
        fer_bench.models.unregister_model(name)


def run_grid(pytester, data_dir: Path, *args: str):
    """Run the 2 models x N in {1, 8} x 2 splits grid (8 cells), 2 epochs (smoke profile).

    Returns the pytest result and how many batches the tiny model trained on."""
    result = pytester.runpytest_inprocess(
        "-q", "--fer-profile", "smoke", "--fer-data", str(data_dir),
        "--fer-models", ",".join(MODELS), "--fer-nhot", "1,8",
        "--fer-results", str(pytester.path / "results"), *BASE_ARGS, *args,
    )
    batches = json.loads((pytester.path / "train_batches.json").read_text())
    return result, batches.get("TinyNet", 0)


def stored_records(pytester) -> list[dict]:
    return [json.loads(p.read_text()) for p in (pytester.path / "results").rglob("*.json")]


def test_grid_json_store_disable_and_failures(bench_dir, data_dir):
    out1 = bench_dir.path / "run1.json"
    result, batches_run1 = run_grid(bench_dir, data_dir, "--benchmark-json", str(out1))
    # The NaN model fails its own 4 cells only; the tiny model's 4 cells pass.
    result.assert_outcomes(passed=4, failed=4)
    result.stdout.fnmatch_lines([
        "fer_bench [[]*/8] plugin_tiny-n8-ordinary-s0 2 epochs in *: test *% honest*",
        "fer_bench [[]*/8] plugin_nan-n1-complex-s0 FAILED: NaN loss at epoch 1*",
        "*plugin_nan-n1-complex-s0 failed: NaN loss at epoch 1*",
    ])
    assert batches_run1 > 0

    report = json.loads(out1.read_text())
    entries = {b["extra_info"]["cell_id"]: b for b in report["benchmarks"]}
    assert sorted(entries) == sorted(f"plugin_tiny-n{n}-{s}-s0" for s in ("complex", "ordinary") for n in (1, 8))
    for cell_id, entry in entries.items():
        record = entry["extra_info"]["fer_bench"]
        assert entry["stats"]["rounds"] == record["cell"]["recipe"]["epochs"] == 2
        assert entry["stats"]["data"] == pytest.approx(record["epoch_times_s"])
        assert entry["extra_info"]["from_store"] is False
        assert entry["extra_info"]["profile"] == "smoke"
        assert entry["group"] == f"bench-{record['cell']['split']}-plugin_tiny"
        assert entry["extra_info"]["experiment"] == record["experiment"] == "bench"
        assert record["status"] == "ok" and record["cell"]["model"] == "plugin_tiny"
        assert entry["param"] == cell_id
    provenance = report["fer_bench"]
    assert provenance["profile"] == "smoke" and provenance["data_label"] == "ferplus"
    assert len(provenance["dataset_fingerprint"]) >= 12
    assert "--fer-models" in provenance["command"]
    assert {"fer_bench", "torch", "timm"} <= set(provenance["versions"])
    assert provenance["device"] == "cpu"
    assert sorted(r["cell"]["model"] for r in provenance["untimed_failures"]) == ["plugin_nan"] * 4
    assert provenance["experiments"] == {"bench": "bench"}
    # The session-end results table was drawn for the cells run.
    result.stdout.fnmatch_lines(["*fer_bench results*", "*plugin_tiny*"])

    # Second run: the tiny cells come from the store (nothing trained), one entry per cell,
    # their stored epoch times as the rounds; the failed cells are retried and fail again.
    out2 = bench_dir.path / "run2.json"
    result, batches_run2 = run_grid(bench_dir, data_dir, "--benchmark-json", str(out2))
    result.assert_outcomes(passed=4, failed=4)
    assert batches_run2 == 0
    stored = {b["extra_info"]["cell_id"]: b for b in json.loads(out2.read_text())["benchmarks"]}
    assert sorted(stored) == sorted(entries)
    for cell_id, entry in stored.items():
        assert entry["extra_info"]["from_store"] is True
        assert entry["extra_info"]["timing"] == "stored"
        assert entry["stats"]["data"] == pytest.approx(entries[cell_id]["stats"]["data"])

    # With pytest-benchmark disabled, the same cells train the same number of epochs.
    result, batches_disabled = run_grid(bench_dir, data_dir, "--benchmark-disable", "--fer-rerun")
    result.assert_outcomes(passed=4, failed=4)
    assert batches_disabled == batches_run1
    records = stored_records(bench_dir)
    assert sorted(r["status"] for r in records) == ["failed"] * 4 + ["ok"] * 4
    for record in records:
        if record["status"] == "ok":
            assert record["cell"]["recipe"]["epochs"] == len(record["epoch_times_s"]) == 2


def test_unknown_model_is_one_usage_error_with_suggestion(bench_dir):
    result = bench_dir.runpytest_inprocess("--fer-models", "plugin_tiny,plugin_tinny", *BASE_ARGS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert text.count("unknown model 'plugin_tinny'") == 1
    assert "did you mean: plugin_tiny" in text


def test_precedence_cli_over_env_over_ini_over_profile(bench_dir, monkeypatch):
    bench_dir.makeini("[pytest]\nfer_nhot = 2\nfer_epochs = 5\nfer_profile = smoke\n")
    bench_dir.makepyfile(test_settings="""
def test_settings(fer_settings):
    print("SETTINGS", tuple(int(v.split("-")[1]) for v in fer_settings.axes["variant"]),
          fer_settings.epochs, fer_settings.profile.name, fer_settings.profile.models)
""")
    def settings_line(*args: str) -> str:
        result = bench_dir.runpytest_inprocess("-s", "test_settings.py", *BASE_ARGS, *args)
        return next(line for line in result.outlines if "SETTINGS" in line)

    # ini beats the profile's 2 epochs; the profile supplies the models
    assert "SETTINGS (2,) 5 smoke ('small_cnn',)" in settings_line()
    monkeypatch.setenv("FER_BENCH_NHOT", "3-4")
    assert "SETTINGS (3, 4) 5 smoke" in settings_line()          # env beats ini
    assert "SETTINGS (7,) 5 smoke" in settings_line("--fer-nhot", "7")   # CLI beats env


def test_plugin_is_silent_without_its_fixtures(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_inprocess("-v", *BASE_ARGS)
    result.assert_outcomes(passed=1)
    assert "fer_bench" not in result.stdout.str()
    assert "fer_bench" not in result.stderr.str()


def test_feed_epoch_times_uses_pytest_benchmark_internals(pytester):
    """Breaks when pytest-benchmark changes the private API ``feed_epoch_times`` relies on."""
    pytester.makepyfile(test_feed="""
from fer_bench.pytest.fixture import feed_epoch_times
from tests.helpers.cells import BASE_ARGS

def test_feed(benchmark):
    assert feed_epoch_times(benchmark, [0.5, 0.25, 1.0]) is (benchmark.enabled)
""")
    out = pytester.path / "feed.json"
    result = pytester.runpytest_inprocess("-W", "error", "--benchmark-json", str(out), *BASE_ARGS)
    result.assert_outcomes(passed=1)
    assert "not used" not in result.stdout.str()
    stats = json.loads(out.read_text())["benchmarks"][0]["stats"]
    assert stats["rounds"] == 3 and stats["data"] == [0.5, 0.25, 1.0]
    assert stats["min"] == 0.25 and stats["max"] == 1.0 and stats["median"] == 0.5
    disabled = pytester.runpytest_inprocess("-W", "error", "--benchmark-disable", *BASE_ARGS)
    disabled.assert_outcomes(passed=1)


def test_feed_epoch_times_without_rounds_records_nothing():
    class Disabled:
        enabled = False
    fixture = Disabled()
    assert feed_epoch_times(fixture, [1.0]) is False
    assert fixture._mode  # marked as used, so pytest-benchmark does not warn


# ---------------------------------------------------------------- progress lines
class FakeReporter:
    """Records what GridProgress writes through pytest's terminal reporter API."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.out, self.currentfspath = tty, [], None

    def isatty(self) -> bool:
        return self.tty

    def ensure_newline(self) -> None:
        self.out.append("<newline>")

    def rewrite(self, line: str, erase: bool = False, **markup) -> None:
        self.out.append(f"<rewrite>{line}")

    def write(self, text: str, **markup) -> None:
        self.out.append(text)

    def write_line(self, line: str, **markup) -> None:
        self.out.append(line + "\n")

    def flush(self) -> None:
        pass


class FakeConfig:
    def __init__(self, reporter: FakeReporter, verbosity: int = 0) -> None:
        self.reporter, self.verbosity = reporter, verbosity
        self.pluginmanager = self

    def get_plugin(self, name: str):
        return self.reporter if name == "terminalreporter" else None

    def get_verbosity(self) -> int:
        return self.verbosity


def epoch_report(epoch: int, epochs: int = 4, seconds: float = 10.0):
    from fer_bench.training.loop import EpochReport

    return EpochReport(epoch, epochs, seconds, 0.05, 0.5, 0.45)


def finished_record(cell_id_model: str = "m", status: str = "ok"):
    from fer_bench.identity.cell import Cell
    from fer_bench.identity.config import TrainConfig
    from fer_bench.identity.record import CellRecord

    cell = Cell(model=cell_id_model, variant="nhot-3", split="complex", seed=0,
                recipe=TrainConfig(epochs=4))
    return CellRecord(cell=cell, status=status,
                      error=None if status == "ok" else "NaN loss", acc_honest=0.5, acc_optimistic=0.6,
                      epoch_times_s=[10.0] * 4)


def test_progress_live_on_a_terminal_one_line_per_epoch_with_eta():
    from fer_bench.pytest.progress import GridProgress

    reporter = FakeReporter(tty=True)
    progress = GridProgress(FakeConfig(reporter))
    progress.total = 3
    progress.start_cell("m-n3-complex-s0")
    progress.on_epoch(epoch_report(1))
    progress.on_epoch(epoch_report(2))
    live = [line for line in reporter.out if line.startswith("<rewrite>")]
    assert len(live) == 2
    # 2 epochs left in this cell at 10 s + 2 more cells of 4 x 10 s = 100 s
    assert live[-1] == ("<rewrite>fer_bench [1/3] m-n3-complex-s0 epoch 2/4 10.0s loss 0.0500 "
                        "val 50.0% | ETA 1m40s")
    progress.finish_cell(finished_record(), from_store=False)
    assert reporter.out[-2].startswith("<rewrite>fer_bench [1/3] m-n3-complex-s0 4 epochs in ")
    # the ETA now comes from this cell's wall time (milliseconds here) x 2 cells left
    assert reporter.out[-2].endswith("test 50.0% honest, 60.0% optimistic | ETA 0s")
    assert reporter.out[-1] == "\n"


def test_progress_without_a_terminal_is_one_line_per_cell_after_the_test_report():
    from fer_bench.pytest.progress import GridProgress

    reporter = FakeReporter(tty=False)
    progress = GridProgress(FakeConfig(reporter))
    progress.total = 2
    progress.start_cell("m-n3-complex-s0")
    for epoch in range(1, 5):
        progress.on_epoch(epoch_report(epoch))
    progress.finish_cell(finished_record(status="failed"), from_store=False)
    assert reporter.out == []                      # held until pytest reported the test
    progress.flush()
    assert reporter.out == ["\nfer_bench [1/2] m-n3-complex-s0 FAILED: NaN loss\n"]
    progress.flush()                               # nothing twice
    assert len(reporter.out) == 1


def test_format_duration():
    from fer_bench.pytest.progress import format_duration

    assert [format_duration(s) for s in (None, 4.4, 65, 3600 + 240)] == ["?", "4s", "1m05s", "1h04m"]
