"""One fer_bench cell as a pytest test sees it (``FerCell``), the timing it feeds to
pytest-benchmark, and the session's data (``SessionData``, behind ``fer_datasets``).

Imported by ``fer_bench.pytest.plugin``'s fixtures only when a test asks for a fer_bench cell or
data set, never in another project's run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from fer_bench.identity.cell import DEFAULT_ALIGNMENT
from fer_bench.identity.record import Status
from fer_bench.pytest.keys import RECORD


class SessionData:
    """The data of one pytest session, ``fer_datasets(rule="study", aligner="none",
    source=None)``: each source loaded once (None: the session's ``--fer-data``), each
    cleaning rule cleaned once per source (the profile's fixed seeded subset when it has
    one), each aligner's output attached once per cleaned data
    (``data.alignment.AlignmentMemo``: on a subset only its rows are aligned when the whole
    source has no cache; a failure is raised again without trying again). The run's
    provenance (``data_label``, ``dataset_fingerprint``) names the session's own source
    (another only when the session's is never loaded)."""

    def __init__(self, state: Any) -> None:
        from fer_bench.data.align.axis import AlignmentMemo

        self.state = state                     # plugin.FerBenchSession
        self.raws: dict[str | None, Any] = {}  # source -> RawDataset, loaded on first use
        self.by_rule: dict[tuple[str | None, str], Any] = {}   # (source, rule) -> CleanDataset
        self.subsetted: set[tuple[str | None, str]] = set()    # cut to the profile's subset
        self.aligned = AlignmentMemo()

    def __call__(self, rule: str = "study", aligner: str = DEFAULT_ALIGNMENT,
                 source: str | None = None) -> Any:
        if source == self.state.settings.data:
            source = None
        key = (source, rule)
        if key not in self.by_rule:
            self.by_rule[key] = self._clean(source, rule)
        if aligner == DEFAULT_ALIGNMENT:
            return self.by_rule[key]
        return self.aligned.aligned(self.raws[source], self.by_rule[key], aligner,
                                    rows_only=key in self.subsetted)

    def _clean(self, source: str | None, rule: str) -> Any:
        from fer_bench.data.cache import load_dataset
        from fer_bench.data.clean import clean, subset

        state = self.state
        if source not in self.raws:
            self.raws[source] = load_dataset(state.settings.data if source is None else source)
        data = clean(self.raws[source], rule)
        profile = state.settings.profile
        if profile.subset is not None and profile.subset < len(data):
            data = subset(data, profile.subset, seed=profile.subset_seed)
            self.subsetted.add((source, rule))
        if source is None or not state.data_label:   # a module's own source only as a fallback
            state.data_label = data.label
        if (source is None and rule == "study") or not state.dataset_fingerprint:
            state.dataset_fingerprint = data.fingerprint
        return data


def fail_line(message: str) -> NoReturn:
    """Fail the current test with ``message`` alone: no traceback, and (raised ``from
    None``) no exception chained before it, which pytest would print first ("During
    handling of the above exception, another exception occurred")."""
    raise pytest.fail.Exception(message, pytrace=False) from None


def skip_line(message: str) -> NoReturn:
    """Skip the current test with ``message`` (no exception chained, as ``fail_line``)."""
    raise pytest.skip.Exception(message) from None


def feed_epoch_times(benchmark: Any, epoch_times_s: list[float]) -> bool:
    """Make each epoch's training time (seconds) one pytest-benchmark round.

    pytest-benchmark 5.x has no public way to hand it durations measured elsewhere, and its
    ``pedantic`` calls the target only once when benchmarking is disabled (and under
    xdist), which would change how many epochs train. So the cell is trained first and its
    epoch times are fed here, the ONE place that touches private API:
    ``_make_stats(iterations)`` creates and registers the stats that go into the JSON,
    ``Metadata.update(seconds)`` adds a round, ``_mode`` marks the fixture as used (else it
    warns "not used at all" and would accept a second use).
    ``tests/test_plugin.py::test_feed_epoch_times_uses_pytest_benchmark_internals`` breaks
    if pytest-benchmark changes them. Returns True when rounds were recorded.
    """
    benchmark._mode = "fer_bench.feed_epoch_times"
    if not benchmark.enabled or not epoch_times_s:
        return False
    stats = benchmark._make_stats(1)
    for seconds in epoch_times_s:
        stats.update(float(seconds))
    return True


@dataclass
class FerCell:
    """One cell as a test sees it: its identity ``cell`` (``fer_bench.identity.cell.Cell``) and ``run``."""

    cell: Any                 # cell.Cell
    spec: Any                 # registry.ModelSpec
    init_path: Any            # Path of a local weights file, or None
    dataset: Any              # CleanDataset
    store: Any                # ResultStore
    state: Any                # plugin.FerBenchSession
    node: pytest.Item
    experiment: str = ""

    @property
    def id(self) -> str:
        return self.cell.id

    @property
    def config(self) -> Any:
        """The cell's recipe (``TrainConfig``)."""
        return self.cell.recipe

    def run(self, benchmark: Any | None = None) -> Any:
        """Train (or load) the cell and report it; returns its ``CellRecord``.

        Timing: each epoch's training seconds become one benchmark round, so
        ``stats.rounds == epochs``. A cell taken from the store feeds its *stored* epoch
        times (``extra_info["from_store"] is True``, ``"timing": "stored"``); the store only
        serves a record of the same device type and precision. A failed cell is recorded,
        then its test fails with the error; the grid goes on.
        """
        from fer_bench.errors import CellSkipped, FerBenchError
        from fer_bench.results.run import get_or_run_cell
        from fer_bench.training.preempt import CellPreempted

        settings, progress = self.state.settings, self.state.progress
        progress.start_cell(self.id)
        try:
            record, from_store = get_or_run_cell(
                self.store, self.spec, self.dataset, self.cell, device=self.state.device,
                rerun=settings.rerun, on_epoch=progress.on_epoch,
                profile=str(settings.profile.name) if settings.profile_chosen else "",
                init_path=self.init_path, experiment=self.experiment)
        except CellSkipped as exc:
            skip_line(str(exc))
        except CellPreempted as exc:   # SIGTERM/SIGUSR1: end the session, exit 75 = requeue
            pytest.exit(str(exc), returncode=exc.code)
        except FerBenchError as exc:   # e.g. a split this data cannot build: one line, no traceback
            fail_line(f"{self.id}: {exc}")
        record.experiment = self.experiment   # the same cell may serve several experiments
        self.node.stash[RECORD] = (record, from_store)
        if benchmark is not None:
            benchmark.group = f"{self.experiment}-{self.cell.split}-{self.cell.model}"
            benchmark.extra_info.update({
                "fer_bench": record.to_dict(), "from_store": from_store, "cell_id": record.cell_id,
                "experiment": self.experiment, "profile": str(settings.profile.name),
                "timing": "stored" if from_store else "measured",
            })
            fed = feed_epoch_times(benchmark, record.epoch_times_s)
            if benchmark.enabled and not fed:
                self.state.untimed.append(record.to_dict())
        progress.finish_cell(record, from_store)
        if record.status != Status.OK:
            pytest.fail(f"{record.cell_id} failed: {record.error}", pytrace=False)
        return record
