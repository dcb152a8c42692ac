"""The one result schema: the record of one cell.

A ``CellRecord`` is what the runner produces, the store persists, the plugin puts in
pytest-benchmark's ``extra_info`` and the leaderboard reads. Its ``cell`` is the complete
identity (``fer_bench.identity.cell.Cell``); everything else is what was measured. ``to_dict`` /
``from_dict`` round-trip through JSON exactly; per-image arrays are stored as base64.
"""

from __future__ import annotations

import base64
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np

from fer_bench.identity.cell import Cell
from fer_bench.strenum import StrEnum

#: 2: the complete cell identity replaced (model, nhot, split, seed, config, config_hash).
SCHEMA_VERSION = 2


class Status(StrEnum):
    """How a cell ended (``CellRecord.status``; stored as its text, so records written
    before it existed load unchanged)."""

    OK = "ok"
    FAILED = "failed"


def encode_uint8(values: np.ndarray) -> str:
    """uint8 array [M] -> base64 text (1 byte per image)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.uint8).tobytes()).decode()


def decode_uint8(text: str) -> np.ndarray:
    """Inverse of ``encode_uint8``: base64 text -> uint8 array [M]."""
    return np.frombuffer(base64.b64decode(text.encode()), dtype=np.uint8).copy()


def encode_bool(values: np.ndarray) -> str:
    """bool array [M] -> base64 of the packed bits (M/8 bytes)."""
    return base64.b64encode(np.packbits(np.asarray(values, dtype=bool)).tobytes()).decode()


def decode_bool(text: str, length: int) -> np.ndarray:
    """Inverse of ``encode_bool``; ``length`` is M (packing pads to a byte)."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text.encode()), dtype=np.uint8))
    return bits[:length].astype(bool)


@dataclass
class CellRecord:
    """Everything SPEC "Record of one cell" lists. Accuracies are fractions in [0, 1].

    Per-epoch lists have one entry per trained epoch (index 0 = epoch 1).
    ``acc_honest`` = test accuracy at ``best_val_epoch`` (1-based, first best on ties);
    ``acc_optimistic`` = best test accuracy over epochs (the report's figure).
    Accuracies are tie-aware against the split's scoring targets; ``official-majority``
    scores against one-hot majority labels (top-1), and then ``acc_tie_aware`` holds the
    tie-aware accuracy of the same selected-epoch predictions on the full cleaned
    distributions (None for splits scored on those already).
    ``test_predictions``: base64 uint8 [n_test], predicted class per test image in split order;
    ``test_correct``: base64 packed bits [n_test], tie-aware correctness per test image.
    ``test_aligned``: base64 packed bits [n_test], the cell's aligner found usable landmarks
    in the test image (``fer_bench.data.align.axis``); "" for a cell without an aligner.
    ``epoch_times_s``: wall seconds of each epoch's training pass (device-synchronised).
    ``peak_memory_bytes``: the cell's own peak memory: CUDA allocated (``memory_kind``
    "cuda"), or on a CPU the peak growth of host RSS over its level when the cell started
    ("host_rss_cell_delta"; "host_rss", the process-wide peak, where that cannot be measured
    and in records of older runs). See ``training.device.CellMemory``.
    ``train_flops_per_image`` / ``eval_flops_per_image``: matmul and convolution FLOPs of
    one training step (forward + backward) / one evaluation of one image at the model's
    input size, ``torch.utils.flop_counter`` (``training.flops``); None in older records.
    ``test_top1`` / ``acc_top1_honest`` / ``acc_top1_optimistic``: the same as ``test_acc``
    / ``acc_honest`` / ``acc_optimistic`` scored top-1 (``metrics.top1_correct``: the
    prediction against the first top-share emotion, as the literature scores); the honest
    one is at ``best_val_epoch`` (selection stays on tie-aware validation accuracy).
    ``train_targets_sha256``: sha256 of the training images' identity (``split_fingerprint``)
    and their treated targets (float32 [T, 8] in training order, before augmentation):
    two cells with the same value trained on identical data (7-hot = 8-hot on FERPlus).
    ``setup_s`` / ``flops_s`` / ``eval_s`` / ``store_s`` / ``wall_s``: where the cell's wall
    time went: data set-up and model build, FLOP counting, validation + test evaluation
    of every epoch, the store write, and the whole cell (training is
    ``sum(epoch_times_s)``; the rest is other overhead). None in older records.
    ``resumed_from_epoch``: the cell continued from the checkpoint written after this epoch
    (``training.checkpoint``; the last resume when there were several), None when it ran
    in one go. A resumed record keeps each epoch's time as measured when it ran; its
    ``setup_s`` / ``flops_s`` / ``eval_s`` / ``compile_seconds`` / ``wall_s`` sum every
    process's share up to its last checkpoint (work lost to the interruption is not
    counted); ``peak_memory_bytes`` is the last process's. ``checkpoint_bytes``: size of
    the last epoch checkpoint written; ``checkpoint_write_s``: seconds of the checkpoint
    writes (after a resume all but the one resumed from, whose time died with its process);
    both None when the cell ran without checkpoints.
    ``compile_seconds``: wall seconds of ``torch.compile`` and its warm-up for a cell whose
    recipe compiles (``training.compiled``), kept out of epoch and evaluation time; None else.
    ``kl_true_mean`` / ``acc_true_top``: on data with a known hidden distribution (synthetic:
    ``data.schema.GroundTruth``), the selected epoch's mean KL(true || predicted) in nats and
    its accuracy against the true top emotion (``metrics.truth_recovery``);
    ``synthetic_taggers``: simulated taggers per image of that data. None for real data.
    ``majority_acc``: the chance level a model must beat: the tie-aware test accuracy of the
    constant predictor that always answers the most frequent top emotion of the cell's
    training targets (``training.evaluate.majority_accuracy``); None in older records and
    when no epoch finished.
    ``train_extra_loss``: per epoch, the mean over the epoch's batches of the model's own
    extra loss term (``ModelSpec.extra_loss``, e.g. RAN's region-biased loss; a batch where
    it returned None counts 0), already included in ``train_loss``; empty for a model
    without one and in older records.
    """

    cell: Cell
    status: Status = Status.OK
    error: str | None = None
    acc_honest: float | None = None
    acc_optimistic: float | None = None
    acc_tie_aware: float | None = None      # see above; official-majority only
    best_val_epoch: int | None = None
    best_test_epoch: int | None = None
    val_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    per_class_acc: dict[str, float | None] = field(default_factory=dict)   # emotion -> acc
    acc_by_complexity: dict[str, float | None] = field(default_factory=dict)  # "1".."8" -> acc
    count_by_complexity: dict[str, int] = field(default_factory=dict)  # "1".."8" -> images
    kl_mean: float | None = None            # mean KL(true || predicted), nats, at best_val_epoch
    epoch_times_s: list[float] = field(default_factory=list)
    train_images_per_s: float | None = None
    eval_images_per_s: float | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    params: int | None = None
    train_flops_per_image: int | None = None   # forward + backward (training.flops)
    eval_flops_per_image: int | None = None    # forward; x2 with flip TTA
    compile_seconds: float | None = None       # torch.compile warm-up (recipe compile="eval")
    test_top1: list[float] = field(default_factory=list)
    acc_top1_honest: float | None = None
    acc_top1_optimistic: float | None = None
    train_targets_sha256: str = ""
    setup_s: float | None = None
    flops_s: float | None = None
    eval_s: float | None = None
    store_s: float | None = None
    wall_s: float | None = None
    resumed_from_epoch: int | None = None
    checkpoint_bytes: int | None = None
    checkpoint_write_s: float | None = None
    kl_true_mean: float | None = None          # nats, at best_val_epoch (synthetic data)
    acc_true_top: float | None = None          # at best_val_epoch (synthetic data)
    synthetic_taggers: int | None = None
    majority_acc: float | None = None          # constant most-frequent-training-emotion predictor
    train_extra_loss: list[float] = field(default_factory=list)   # per epoch; [] without one
    device: str = "cpu"
    device_name: str = ""
    heap: str = ""                          # glibc heap mode of the run (training.heap): times, not numbers
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    test_predictions: str = ""
    test_correct: str = ""
    test_aligned: str = ""
    dataset_label: str = ""                 # "ferplus" | "synthetic"
    dataset_fingerprint: str = ""
    split_fingerprint: str = ""
    experiment: str = ""                    # benchmark module that ran it (not identity)
    init_file: str = ""                     # local weights file path when init is file:<sha256>
    profile: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    started_at: str = ""                    # ISO 8601 UTC
    finished_at: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        try:
            self.status = Status(self.status)
        except ValueError:
            raise ValueError(f"record status {self.status!r} is not one of "
                             f"{', '.join(Status)}") from None

    @property
    def cell_id(self) -> str:
        """Readable id, e.g. ``vgg16-n3-complex-s0`` (``fer_bench.identity.cell.cell_id``)."""
        return self.cell.id

    @property
    def model(self) -> str:
        return self.cell.model

    @property
    def variant(self) -> str:
        return self.cell.variant

    @property
    def nhot(self) -> int | None:
        return self.cell.nhot

    @property
    def split(self) -> str:
        return self.cell.split

    @property
    def seed(self) -> int:
        return self.cell.seed

    @property
    def epochs(self) -> int:
        return self.cell.recipe.epochs

    @property
    def config(self) -> dict[str, Any]:
        """The recipe as a dict (``TrainConfig.to_dict``)."""
        return self.cell.recipe.to_dict()

    def predictions(self) -> np.ndarray:
        """Predicted class per test image, uint8 [n_test]."""
        return decode_uint8(self.test_predictions)

    def correct(self) -> np.ndarray:
        """Tie-aware correctness per test image, bool [n_test]."""
        return decode_bool(self.test_correct, self.n_test)

    def aligned(self) -> np.ndarray | None:
        """Per test image, aligned by the cell's aligner: bool [n_test]; None without one."""
        return decode_bool(self.test_aligned, self.n_test) if self.test_aligned else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (the status as its text: xdist cannot send a str subclass)."""
        data = asdict(self)
        data["cell"] = self.cell.to_dict()
        data["status"] = str(self.status)
        data["profile"] = str(self.profile)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellRecord:
        """Build from ``to_dict`` output; raises ValueError on a missing field or wrong schema."""
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"record schema_version {data.get('schema_version')!r} != {SCHEMA_VERSION}"
            )
        names = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"record is missing fields: {missing}")
        values = {k: v for k, v in data.items() if k in names}
        values["cell"] = Cell.from_dict(values["cell"])
        return cls(**values)
