"""Cleaning (SPEC "Data", report 3.3.1): raw votes -> 8-emotion distributions + complexity.

Two rules (``CLEANING_RULES``), chosen by what a cell's label treatment and split need:

* ``study`` (the default, the N-hot study's rule): an image is dropped when more than 3 of
  its taggers said ``unknown`` or ``NF`` (not a face), or when it has no emotion vote.
* ``ferplus-ms`` (Microsoft's FERPlus protocol, ``fer_bench.data.labels.ferplus_ms``): only images
  without any emotion vote are dropped. Microsoft's loader applies no unknown + NF limit
  (an image with 4 unknown votes and 6 for happiness is a happiness image there), and
  every one of its label modes discards an image without an emotion vote anyway (its top
  vote is then unknown or NF, or nothing is left), so dropping those changes no mode's
  output and keeps ``dist`` a distribution for every kept image.

The 8 emotion counts of every kept image are normalised to sum 1; its complexity X is the
number of emotions with a positive share; ``votes`` keeps its 10 raw vote counts. Kept
images stay in canonical order (the order of the ``RawDataset``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from fer_bench.data.schema import EMOTIONS, VOTE_COLUMNS, CleanDataset, RawDataset
from fer_bench.errors import ConfigError, DataError

#: An image is dropped when unknown + NF votes exceed this (report Fig. 16, image A: 2 + 2).
MAX_UNKNOWN_PLUS_NF = 3
#: The cleaning rules; "study" is the default (see the module docstring).
CLEANING_RULES: tuple[str, ...] = ("study", "ferplus-ms")
DEFAULT_CLEANING = "study"

_N_EMOTIONS = len(EMOTIONS)
_UNKNOWN = VOTE_COLUMNS.index("unknown")
_NOT_A_FACE = VOTE_COLUMNS.index("NF")


def check_rule(rule: str) -> str:
    """``rule`` if it is one of ``CLEANING_RULES``, else ``ConfigError`` listing them."""
    if rule not in CLEANING_RULES:
        raise ConfigError(f"unknown cleaning rule {rule!r}; valid: {', '.join(CLEANING_RULES)}")
    return rule


def keep_mask(votes: np.ndarray, rule: str = DEFAULT_CLEANING) -> np.ndarray:
    """bool [N]: which images of an int vote array [N, 10] survive cleaning ``rule``."""
    emotion_votes = votes[:, :_N_EMOTIONS].sum(axis=1)
    if check_rule(rule) == "ferplus-ms":
        return emotion_votes > 0
    noise_votes = votes[:, _UNKNOWN] + votes[:, _NOT_A_FACE]
    return (noise_votes <= MAX_UNKNOWN_PLUS_NF) & (emotion_votes > 0)


def clean_fingerprint(names: np.ndarray, emotion_counts: np.ndarray, rule: str = DEFAULT_CLEANING,
                      votes: np.ndarray | None = None) -> str:
    """16 hex chars of sha256 over the kept names and their votes.

    ``study``: the names and their 8 emotion counts (unchanged since the first release).
    Another rule also hashes its name and all 10 vote counts (``votes``), so the same
    images cleaned by two rules never share a fingerprint (nor a stored result).
    Independent of the source format: names are hashed as UTF-8 text joined by newlines,
    counts as little-endian int32, so the folder and Kaggle loaders of the same data give
    the same fingerprint.
    """
    digest = hashlib.sha256()
    digest.update("\n".join(str(name) for name in names).encode("utf-8"))
    digest.update(b"\0")
    digest.update(np.ascontiguousarray(emotion_counts, dtype="<i4").tobytes())
    if rule != DEFAULT_CLEANING:
        if votes is None:
            raise ValueError(f"cleaning rule {rule!r}: the fingerprint needs the 10 vote counts")
        digest.update(b"\0cleaning\0" + rule.encode("utf-8") + b"\0")
        digest.update(np.ascontiguousarray(votes, dtype="<i4").tobytes())
    return digest.hexdigest()[:16]


def _validate(raw: RawDataset) -> None:
    votes = raw.votes
    where = raw.report.path
    if votes.ndim != 2 or votes.shape[1] != len(VOTE_COLUMNS):
        raise DataError(f"{where}: votes must have shape [N, {len(VOTE_COLUMNS)}], got {votes.shape}")
    n = votes.shape[0]
    for attr in ("images", "usage", "names"):
        if getattr(raw, attr).shape[0] != n:
            raise DataError(f"{where}: {attr} has {getattr(raw, attr).shape[0]} rows, votes {n}")
    negative = np.flatnonzero((votes < 0).any(axis=1))
    if negative.size:
        i = int(negative[0])
        raise DataError(f"{where}: image {raw.names[i]} (row {i}) has a negative vote count")


def clean(raw: RawDataset, rule: str = DEFAULT_CLEANING) -> CleanDataset:
    """Apply cleaning ``rule`` to a ``RawDataset``; returns the kept images in canonical order.

    dist float32 [M, 8] (rows sum to 1, ``EMOTIONS`` order); complexity int8 [M] in 1..8;
    votes int32 [M, 10] (the raw votes of the kept images); ``truth`` the kept rows of the
    source's ``GroundTruth`` (generated data only). ``label`` is "synthetic" for
    generated data and "ferplus" otherwise. ``ConfigError`` for an unknown rule.
    """
    check_rule(rule)
    _validate(raw)
    keep = keep_mask(raw.votes, rule)
    votes = np.ascontiguousarray(raw.votes[keep], dtype=np.int32)
    counts = votes[:, :_N_EMOTIONS].astype(np.int64)
    dist = (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)
    names = raw.names[keep]
    return CleanDataset(
        images=raw.images[keep],
        dist=dist,
        complexity=(counts > 0).sum(axis=1).astype(np.int8),
        usage=raw.usage[keep].astype(np.int8),
        names=names,
        fingerprint=clean_fingerprint(names, counts, rule, votes),
        label="synthetic" if raw.is_synthetic else "ferplus",
        raw_report=raw.report,
        votes=votes,
        cleaning=rule,
        truth=None if raw.truth is None else raw.truth.take(keep),
    )


def subset(data: CleanDataset, n: int, seed: int = 0) -> CleanDataset:
    """A seeded uniform sample of ``n`` images of ``data``, kept in canonical order.

    Draws ``default_rng(seed).choice(M, n, replace=False)`` and sorts it. The fingerprint
    becomes sha256 over the parent fingerprint and the chosen indices (16 hex chars).
    ``n >= M`` returns ``data`` unchanged.
    """
    if n < 1:
        raise ValueError(f"subset size must be >= 1, got {n}")
    if n >= len(data):
        return data
    chosen = np.sort(np.random.default_rng(seed).choice(len(data), size=n, replace=False))
    digest = hashlib.sha256(data.fingerprint.encode("ascii") + b"\0subset\0")
    digest.update(np.ascontiguousarray(chosen, dtype="<i8").tobytes())
    return CleanDataset(
        images=data.images[chosen],
        dist=data.dist[chosen],
        complexity=data.complexity[chosen],
        usage=data.usage[chosen],
        names=data.names[chosen],
        fingerprint=digest.hexdigest()[:16],
        label=data.label,
        raw_report=data.raw_report,
        votes=None if data.votes is None else data.votes[chosen],
        cleaning=data.cleaning,
        alignment=None if data.alignment is None else data.alignment.take(chosen),
        truth=None if data.truth is None else data.truth.take(chosen),
    )
