"""Microsoft's FERPlus protocol (Barsoum et al. 2016): the four label modes and the
majority-voted official split, as ``microsoft/FERPlus`` ``src/ferplus.py`` does it.

Line numbers cite microsoft/FERPlus at commit 9b1f8caa865f (the last change of
``src/ferplus.py`` and ``src/train.py``; unchanged at HEAD ae2128abf776). Written here from
the description below, not copied.

Per image, ``_process_data(emotion_raw, mode)`` (ferplus.py L203-258) on the 10 vote
counts (``VOTE_COLUMNS``: 8 emotions, unknown, NF):

1. **Outlier removal** (L215-218): every count below ``1 + machine epsilon`` becomes 0,
   i.e. a class with a single vote is dropped, unknown and NF included. ``total`` is the
   sum of what is left (L220).
2. **majority** (L223-229): the top count wins if it is more than half of ``total``
   (strictly); otherwise the image is "unknown".
3. **probability / crossentropy** (L230-249): take the top count, with every count tied
   with it, pass after pass, while the taken votes cover less than 75% of ``total``, fewer
   than 3 classes were taken and no pass met unknown or NF. A pass walks the columns in
   order; when it reaches unknown or NF at the peak it stops everything, and that column
   is left out again if an emotion was taken before it (L242-247). The image is "unknown"
   when the taken votes are at most half of ``total`` or more than 3 classes were taken
   (L248-249).
4. **multi_target** (L250-256): every class (unknown and NF included) with at least 30% of
   ``total``; "unknown" when those hold at most half of ``total``.
5. The kept counts are normalised to sum 1 (L258); "unknown" is the one-hot unknown row.

The loader (``load_folders``, L169-176) keeps an image only if the ``argmax`` of that
10-way result (first maximum) is an emotion: forced-unknown images and images whose top is
unknown or NF are dropped. The 8 emotion shares are then renormalised. The training target
(``_process_target``, L182-201): majority and crossentropy use that distribution (a one-hot
row for majority); probability draws one label from it per image each time the image is
fetched (once per epoch: loss ``pld``); multi_target marks every positive share (L197-201,
loss ``ms_multitarget`` in ``fer_bench.training.losses``). Validation (PublicTest) and test
(PrivateTest) are always read in majority mode (train.py L72-77) and scored top-1 against
that label (train.py L97, ``classification_error``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_bench.data.labels.treatments import LABELS, LabelTreatment
from fer_bench.data.schema import EMOTIONS, USAGES, VOTE_COLUMNS, CleanDataset
from fer_bench.data.splits import SPLITS, SplitKind
from fer_bench.errors import DataError, SplitUnavailable

#: Microsoft's training modes (``train.py -m``), in the paper's order.
MODES: tuple[str, ...] = ("majority", "probability", "crossentropy", "multi_target")
#: mode -> registered label treatment (the ``variant`` axis of a cell).
VARIANT_OF_MODE: dict[str, str] = {
    "majority": "ms-majority", "probability": "ms-probability",
    "crossentropy": "ms-crossentropy", "multi_target": "ms-multitarget",
}
MODE_OF_VARIANT: dict[str, str] = {v: m for m, v in VARIANT_OF_MODE.items()}
#: The loss each mode trains with (train.py ``cost_func`` L34-46; probability draws a
#: one-hot target per epoch, ferplus.py L192-196).
LOSS_OF_VARIANT: dict[str, str] = {
    "ms-majority": "cce", "ms-probability": "pld", "ms-crossentropy": "cce",
    "ms-multitarget": "ms_multitarget",
}
#: The split of the protocol and the cleaning rule everything here needs.
SPLIT_NAME = "official-majority"
CLEANING = "ferplus-ms"
#: Barsoum et al. 2016, VGG13 on FER+, 5 runs (their table; not measured here).
BARSOUM_2016: dict[str, str] = {
    "ms-majority": "83.85 ± 0.63", "ms-multitarget": "83.97 ± 0.36",
    "ms-probability": "84.99 ± 0.37", "ms-crossentropy": "84.72 ± 0.24",
}
#: The paper's names of the modes.
PAPER_NAME: dict[str, str] = {
    "ms-majority": "majority voting", "ms-multitarget": "multi-label",
    "ms-probability": "probability (label drawing)", "ms-crossentropy": "cross-entropy",
}

OUTLIER_LIMIT = 1.0 + sys.float_info.epsilon   # L217: counts below this become 0
MAJORITY_SHARE = 0.5                           # L226
TIE_COVERAGE = 0.75                            # L234
TIE_MAX_CLASSES = 3                            # L234, L248
MULTI_TARGET_SHARE = 0.3                       # L251
MIN_KEPT_SHARE = 0.5                           # L248, L255
_N_VOTES = len(VOTE_COLUMNS)
_N_EMOTIONS = len(EMOTIONS)
_UNKNOWN = VOTE_COLUMNS.index("unknown")

#: Why an image is kept or dropped by a mode (``ModeResult.reason``).
KEPT, NOTHING_LEFT, REJECTED, NOT_AN_EMOTION = 0, 1, 2, 3
REASONS: tuple[str, ...] = ("kept", "no votes left after outlier removal",
                            "rejected by the mode (no majority / too few or too many classes)",
                            "top vote is unknown or NF")


@dataclass(frozen=True)
class ModeResult:
    """One image in one mode: ``dist`` the 10 shares ``_process_data`` returns (the unknown
    one-hot row when the mode gave up), ``forced`` whether it gave up, ``reason`` one of
    ``KEPT``/``NOTHING_LEFT``/``REJECTED``/``NOT_AN_EMOTION``, ``target`` the 8 emotion
    shares the loader keeps (None when the image is dropped)."""

    dist: tuple[float, ...]
    forced: bool
    reason: int
    target: tuple[float, ...] | None

    @property
    def kept(self) -> bool:
        return self.reason == KEPT


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown FERPlus mode {mode!r}; valid: {', '.join(MODES)}")
    return mode


def _check_row(votes: Sequence[float]) -> list[float]:
    row = [float(v) for v in votes]
    if len(row) != _N_VOTES:
        raise DataError(f"a FERPlus vote row has {_N_VOTES} counts ({', '.join(VOTE_COLUMNS)}), "
                        f"got {len(row)}: {list(votes)}")
    if any(not math.isfinite(v) or v < 0 for v in row):
        raise DataError(f"a FERPlus vote row must hold finite counts >= 0, got {list(votes)}")
    return row


def _take_ties(counts: list[float], total: float) -> tuple[list[float], int]:
    """probability / crossentropy (L231-247): (taken counts, number of classes taken)."""
    left = list(counts)
    taken = [0.0] * _N_VOTES
    covered, n_taken, met_noise = 0.0, 0, False
    while covered < TIE_COVERAGE * total and n_taken < TIE_MAX_CLASSES and not met_noise:
        peak = max(left)
        for i in range(_N_VOTES):
            if left[i] != peak:
                continue
            taken[i], left[i] = peak, 0.0
            covered += peak
            n_taken += 1
            if i >= _UNKNOWN:          # unknown or NF at the peak ends the search (L242-247)
                met_noise = True
                if sum(taken) > peak:  # an emotion came before it: leave unknown/NF out
                    taken[i] = 0.0
                    n_taken -= 1
                break
    return taken, n_taken


def process_votes(votes: Sequence[float], mode: str) -> ModeResult:
    """One vote row [10] through ``_process_data`` and the loader's filter (module docstring).

    ``DataError`` for a row that is not 10 finite counts >= 0; ``ValueError`` for an
    unknown mode.
    """
    _check_mode(mode)
    counts = [0.0 if v < OUTLIER_LIMIT else v for v in _check_row(votes)]   # L215-218
    total = sum(counts)
    kept = [0.0] * _N_VOTES
    forced = False
    if mode == "majority":
        peak = max(counts)
        if peak > MAJORITY_SHARE * total:
            kept[counts.index(peak)] = peak          # np.argmax: the first maximum
        else:
            forced = True
    elif mode in ("probability", "crossentropy"):
        kept, n_taken = _take_ties(counts, total)
        forced = sum(kept) <= MIN_KEPT_SHARE * total or n_taken > TIE_MAX_CLASSES
    else:   # multi_target
        kept = [c if c >= MULTI_TARGET_SHARE * total else 0.0 for c in counts]
        forced = sum(kept) <= MIN_KEPT_SHARE * total
    if forced:
        kept = [0.0] * _N_VOTES
        kept[_UNKNOWN] = 1.0
    dist = tuple(v / sum(kept) for v in kept)                                # L258
    if forced:
        reason = NOTHING_LEFT if total == 0 else REJECTED
    else:
        reason = KEPT if dist.index(max(dist)) < _N_EMOTIONS else NOT_AN_EMOTION  # L171-172
    target = None
    if reason == KEPT:
        emotions = dist[:_N_EMOTIONS]                                        # L173-174
        target = tuple(v / sum(emotions) for v in emotions)
    return ModeResult(dist, forced, reason, target)


def mode_targets(votes: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row of int votes [N, 10] in ``mode``: (kept bool [N], targets float64 [N, 8],
    reason int8 [N]). ``targets`` are the training rows of the mode (zeros where dropped):
    majority the one-hot label, probability / crossentropy the kept shares, multi_target
    the mask of positive shares normalised to sum 1."""
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != _N_VOTES:
        raise DataError(f"FERPlus votes must have shape [N, {_N_VOTES}], got {votes.shape}")
    kept = np.zeros(len(votes), dtype=bool)
    targets = np.zeros((len(votes), _N_EMOTIONS), dtype=np.float64)
    reasons = np.zeros(len(votes), dtype=np.int8)
    for i, row in enumerate(votes.tolist()):
        result = process_votes(row, mode)
        reasons[i] = result.reason
        if result.target is None:
            continue
        kept[i] = True
        target = np.asarray(result.target)
        if mode == "multi_target":
            target = (target > 0) / np.count_nonzero(target)
        targets[i] = target
    return kept, targets, reasons


def majority_labels(votes: np.ndarray) -> np.ndarray:
    """int64 [N]: each row's majority label (``EMOTIONS`` index), -1 where majority mode
    drops the image (how validation and test images are read, train.py L73)."""
    kept, targets, _ = mode_targets(votes, "majority")
    return np.where(kept, targets.argmax(axis=1), -1)


# ----------------------------------------------------------------------------- registry
def _votes_of(data: CleanDataset) -> np.ndarray:
    if data.votes is None:
        raise DataError(f"{data.raw_report.path}: Microsoft's FERPlus modes need the raw 10 "
                        f"vote counts of every image; this data set holds none")
    return data.votes


def _treatment(mode: str):
    def targets(data: CleanDataset, train: np.ndarray, seed: int):
        train = np.asarray(train, dtype=np.int64)
        kept, rows, _ = mode_targets(_votes_of(data)[train], mode)
        return train[kept], rows[kept].astype(np.float32)
    return targets


def official_majority_indices(data: CleanDataset, seed: int,
                              val_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """train = every Training image (the label mode drops its own), val = PublicTest and
    test = PrivateTest images with a majority label. ``SplitUnavailable`` naming the usage
    when the data has no images of one (e.g. no PrivateTest rows) or none with a majority."""
    usage = np.asarray(data.usage)
    parts = [np.flatnonzero(usage == USAGES.index(u)) for u in USAGES]
    held = ", ".join(f"{len(p):,} {u}" for u, p in zip(USAGES, parts, strict=True))
    roles = ("training", "validation", "test")
    missing = [f"{u} (its {r} set)" for u, r, p in zip(USAGES, roles, parts, strict=True) if not len(p)]
    if missing:
        raise SplitUnavailable(
            f"{data.raw_report.path}: split {SPLIT_NAME!r} needs FERPlus Training, PublicTest and "
            f"PrivateTest images; this data has no {' and no '.join(missing)} images ({held}); "
            f"use a FERPlus source with all three usages, or split ordinary / complex")
    train, val, test = parts
    votes = _votes_of(data)
    val, test = (p[majority_labels(votes[p]) >= 0] for p in (val, test))
    for name, part in (("PublicTest", val), ("PrivateTest", test)):
        if not len(part):
            raise SplitUnavailable(f"{data.raw_report.path}: split {SPLIT_NAME!r}: no {name} "
                                   f"image has a majority label ({held})")
    return train, val, test


def majority_targets(data: CleanDataset, indices: np.ndarray) -> np.ndarray:
    """float32 [n, 8]: the one-hot majority label of each image (what ``official-majority``
    scores against: tie-aware accuracy on a one-hot row is top-1 accuracy).

    The majority emotion is always the single top share of the image's full cleaned
    distribution too: it holds more than half of the votes left after outlier removal, so
    any other class either has a single vote (below its two or more) or fewer votes. Hence
    top-1 against these targets equals tie-aware accuracy on ``data.dist`` for the same
    predictions (``CellRecord.acc_tie_aware`` records the latter as a check)."""
    labels = majority_labels(_votes_of(data)[np.asarray(indices, dtype=np.int64)])
    if (labels < 0).any():
        bad = int(np.asarray(indices)[np.argmax(labels < 0)])
        raise DataError(f"{data.raw_report.path}: image {data.names[bad]} has no majority label")
    return np.eye(_N_EMOTIONS, dtype=np.float32)[labels]


_DESCRIPTIONS = {
    "majority": "FERPlus majority mode (Barsoum et al. 2016): one-hot majority label, images "
                "without one dropped; train with loss cce",
    "probability": "FERPlus probability mode: top classes with ties up to 75% of the votes, one "
                   "label drawn per image per epoch; train with loss pld",
    "crossentropy": "FERPlus cross-entropy mode: the same shares as probability as soft "
                    "targets; train with loss cce",
    "multi_target": "FERPlus multi-target mode: every class with >= 30% of the votes, equal "
                    "weight; train with loss ms_multitarget",
}
for _mode in MODES:
    LABELS.register(VARIANT_OF_MODE[_mode], LabelTreatment(
        VARIANT_OF_MODE[_mode], _treatment(_mode), _DESCRIPTIONS[_mode], cleaning=CLEANING),
        builtin=True)
SPLITS.register(SPLIT_NAME, SplitKind(
    SPLIT_NAME, official_majority_indices,
    "FERPlus Training / PublicTest / PrivateTest, validation and test images with a majority "
    "label only (Barsoum et al. 2016); accuracy = top-1 against the majority label",
    note="official-majority: Microsoft's FERPlus protocol; accuracy is top-1 against the "
         "majority label (the tie-aware accuracy on the full vote shares, recorded beside it, "
         "is the same number on these images: the majority emotion is their one top share)",
    cleaning=CLEANING, eval_targets=majority_targets), builtin=True)


def literature_counts(data: CleanDataset) -> dict[str, object]:
    """Per mode and usage the images kept (and why the others were dropped), and the sizes
    of the majority-voted validation and test sets: a JSON-ready dict for ``data stats``."""
    votes = _votes_of(data)
    usage = np.asarray(data.usage)
    modes = {}
    majority = np.zeros(len(votes), dtype=bool)
    for mode in MODES:
        kept, _, reasons = mode_targets(votes, mode)
        if mode == "majority":
            majority = kept
        modes[mode] = {
            "variant": VARIANT_OF_MODE[mode],
            "kept": {u: int(kept[usage == i].sum()) for i, u in enumerate(USAGES)},
            "dropped": {REASONS[r]: {u: int(((reasons == r) & (usage == i)).sum())
                                     for i, u in enumerate(USAGES)}
                        for r in (NOTHING_LEFT, REJECTED, NOT_AN_EMOTION)},
        }
    return {
        "cleaning": data.cleaning,
        "images": {u: int((usage == i).sum()) for i, u in enumerate(USAGES)},
        "modes": modes,
        "majority_voted": {"val": int(majority[usage == USAGES.index("PublicTest")].sum()),
                           "test": int(majority[usage == USAGES.index("PrivateTest")].sum())},
    }
