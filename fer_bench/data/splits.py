"""Train / validation / test splits of a ``CleanDataset`` (SPEC "Data", report 3.3.2).

The algorithm, fixed so any implementation following it gets the same indices for a seed
(all randomness is numpy ``default_rng`` / PCG64, over canonical-order indices 0..M-1):

* ``ordinary``: ``n_test = round(0.1 * M)``; ``test = default_rng(seed).permutation(M)[:n_test]``.
* ``complex``: the pool is the images with complexity X > 3 (ascending index order);
  ``test = default_rng(seed).permutation(pool)[:n_test]`` with the same ``n_test`` as
  ``ordinary``; if the pool holds fewer, all of it is the test set and a warning is issued.
  Train = every other image, leftover complex ones included.
* ``official``: train = Training, val = PublicTest, test = PrivateTest (no carving).
* ``official-majority`` (``fer_bench.data.labels.ferplus_ms``, data cleaned by rule ``ferplus-ms``):
  as ``official``, validation and test images kept only with a majority label, scored
  against it (``SplitKind.eval_targets``).
* Validation (ordinary / complex): ``n_val = round(val_fraction * len(train))`` drawn as
  ``default_rng([seed, VAL_STREAM]).permutation(train)[:n_val]`` where ``train`` is the
  sorted non-test indices. A separate stream, so the test draw never shifts it.

Python's ``round`` (half to even) is used for both sizes. All arrays are sorted int64.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fer_bench.data.schema import USAGES, CleanDataset, Split
from fer_bench.errors import DataError, SplitUnavailable
from fer_bench.registry import Registry, instances_of

#: The built-in split kinds (the registry ``SPLITS`` may hold more).
SPLIT_NAMES: tuple[str, ...] = ("ordinary", "complex", "official")
#: Share of the cleaned images in the ordinary (and complex) test set.
TEST_FRACTION = 0.1
#: Images with complexity above this are "complex" (report 3.3.2).
COMPLEX_MIN_EXCLUSIVE = 3
#: Second entropy word of the validation stream: ``default_rng([seed, VAL_STREAM])``.
VAL_STREAM = 1


def split_fingerprint(name: str, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> str:
    """16 hex chars of sha256 over the split name and its three index arrays (int64 LE)."""
    digest = hashlib.sha256(name.encode("utf-8"))
    for part in (train, val, test):
        digest.update(b"\0")
        digest.update(np.ascontiguousarray(part, dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


def _carve_validation(train: np.ndarray, seed: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    n_val = round(val_fraction * len(train))
    if n_val < 1:
        # Honest model selection needs a validation set; never fall back to the test set.
        raise DataError(f"validation slice is empty: val_fraction={val_fraction} of "
                        f"{len(train)} training images rounds to 0; use val_fraction > 0 "
                        f"or more data")
    val = np.random.default_rng([seed, VAL_STREAM]).permutation(train)[:n_val]
    val = np.sort(val)
    return np.setdiff1d(train, val, assume_unique=True), val


def _test_indices(data: CleanDataset, name: str, seed: int) -> np.ndarray:
    m = len(data)
    n_test = round(TEST_FRACTION * m)
    if name == "ordinary":
        return np.random.default_rng(seed).permutation(m)[:n_test]
    pool = np.flatnonzero(data.complexity > COMPLEX_MIN_EXCLUSIVE)
    if len(pool) < n_test:
        warnings.warn(
            f"complex split: only {len(pool)} images with X > {COMPLEX_MIN_EXCLUSIVE} "
            f"(wanted {n_test}); the test set is all of them",
            stacklevel=3,
        )
        return pool
    return np.random.default_rng(seed).permutation(pool)[:n_test]


@dataclass(frozen=True)
class SplitKind:
    """A registered way to split: ``indices(data, seed, val_fraction)`` returns the
    (train, val, test) index arrays into ``data`` (any order; ``make_split`` sorts them).
    ``note`` is shown beside the split's leaderboard table. ``cleaning``: the cleaning rule
    the data must have been cleaned by (``fer_bench.data.clean.CLEANING_RULES``).
    ``eval_targets(data, indices) -> float [n, 8]``: what validation and test predictions
    are scored against (tie-aware accuracy); None = the full cleaned distributions
    ``data.dist[indices]``."""

    name: str
    indices: Callable[[CleanDataset, int, float], tuple[np.ndarray, np.ndarray, np.ndarray]]
    description: str = ""
    note: str = ""
    cleaning: str = "study"
    eval_targets: Callable[[CleanDataset, np.ndarray], np.ndarray] | None = None


#: Entry-point group ``fer_bench.splits``; targets are ``SplitKind`` objects. Built-in module
#: ``ferplus_ms`` registers ``official-majority`` (imported on the first lookup or listing).
SPLITS: Registry[SplitKind] = Registry("split", "fer_bench.splits", instances_of(SplitKind, "split"),
                                       option="--fer-splits",
                                       builtins=("fer_bench.data.labels.ferplus_ms",))


def _random_test(name: str) -> Callable[[CleanDataset, int, float], tuple[np.ndarray, ...]]:
    def indices(data: CleanDataset, seed: int, val_fraction: float):
        test = np.sort(_test_indices(data, name, seed))
        rest = np.setdiff1d(np.arange(len(data)), test, assume_unique=True)
        train, val = _carve_validation(rest, seed, val_fraction)
        return train, val, test
    return indices


def _official(data: CleanDataset, seed: int, val_fraction: float):
    usage = np.asarray(data.usage)
    parts = tuple(np.flatnonzero(usage == USAGES.index(u)) for u in USAGES)
    missing = [f"{u} ({role})" for u, role, part in zip(USAGES, ("train", "validation", "test"),
                                                          parts, strict=True) if len(part) == 0]
    if missing:
        held = ", ".join(f"{len(p):,} {u}" for u, p in zip(USAGES, parts, strict=True))
        raise SplitUnavailable(
            f"{data.raw_report.path}: split 'official' needs FERPlus Training, PublicTest and "
            f"PrivateTest images; this data has no {' and no '.join(missing)} images after "
            f"cleaning ({held}); use split ordinary or complex")
    return parts


SPLITS.register("ordinary", SplitKind(
    "ordinary", _random_test("ordinary"), "test = uniform random 10% of the cleaned images"),
    builtin=True)
SPLITS.register("complex", SplitKind(
    "complex", _random_test("complex"),
    "test = random images with X > 3, as many as the ordinary test set",
    note="complex split: the validation slice is carved from the training pool, which is "
         "mostly ordinary faces (X <= 3), so model selection is not tuned to complex faces"),
    builtin=True)
SPLITS.register("official", SplitKind(
    "official", _official, "FERPlus Training / PublicTest (validation) / PrivateTest"),
    builtin=True)


def make_split(data: CleanDataset, name: str, seed: int, val_fraction: float = 0.1) -> Split:
    """Split ``data`` with the registered split kind ``name``; deterministic per ``seed``.

    ``seed`` a non-negative int; ``val_fraction`` in [0, 1) (ignored by ``official``, whose
    validation set is PublicTest). Returns a ``Split`` of sorted, disjoint int64 index
    arrays into ``data``. ``ConfigError`` for an unknown name (close names suggested);
    ``SplitUnavailable`` (a ``DataError``) when the data cannot provide the split (official
    on a source without PublicTest/PrivateTest rows, an empty train or test set).
    """
    kind = SPLITS.get(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"split seed must be a non-negative int, got {seed!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    seed = int(seed)
    train, val, test = kind.indices(data, seed, val_fraction)
    if len(test) == 0 or len(train) == 0:
        raise SplitUnavailable(
            f"{data.raw_report.path}: split {name!r} of {len(data)} images leaves "
            f"{len(train)} training and {len(test)} test images"
        )
    train, val, test = (np.sort(np.asarray(a, dtype=np.int64)) for a in (train, val, test))
    return Split(
        name=name, seed=seed, train=train, val=val, test=test,
        fingerprint=split_fingerprint(name, train, val, test),
    )
