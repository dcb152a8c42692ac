"""Alignment as a dataset variant (issue 11, report 4.3.2 and 5.3.2): the ``alignment`` axis.

An axis value is ``"none"`` or an aligner name of ``ALIGNERS`` (``dlib-hog``, ``dlib-cnn``;
entry-point group ``fer_bench.aligners``, targets ``AlignSettings``). The cleaned data's
fingerprint hashes names and votes, not pixels, so a cell's ``alignment`` field carries
the aligner's identity itself (``cell_alignment``), ``<aligner>-<first 8 hex of
align.settings_key>`` (the settings and the sha256 of every dlib model file):

* ``none``: no aligner output is used;
* ``dlib-hog-1a2b3c4d``: the cell trains and tests on that aligner's images: aligned where
  it found usable landmarks, the source image elsewhere (report 4.3.2, 5.2.3);
* ``landmarks-dlib-hog-1a2b3c4d``: the source images, with that aligner's per-image
  landmarks (inclination) for an augmentation set that needs them (the adaptive sets,
  ``training.augment``) on unaligned images. ``DEFAULT_LANDMARK_ALIGNER`` supplies them.

``align_clean(raw, clean, aligner)`` runs the aligner (or reads its cache: ``data.align``)
and returns a ``CleanAlignment`` in the cleaned data's row order, matched by image name;
``with_alignment`` attaches it to the ``CleanDataset`` (``clean.alignment``), where
``tasks.build_task_data`` finds it: the cell's images, the training images' inclination as
trained (``inclination_as_trained``: 0 for images the aligner levelled, the source
inclination for unaligned images, NaN without landmarks) and the per-image flags of the
test images (kept in the record, ``CellRecord.test_aligned``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fer_bench.data.align import (
    AlignResult,
    AlignSettings,
    align_dataset,
    load_aligned,
    settings_key,
)
from fer_bench.data.schema import CleanDataset, RawDataset
from fer_bench.errors import ConfigError, DataError
from fer_bench.registry import Registry, instances_of

NO_ALIGNMENT = "none"
LANDMARKS_PREFIX = "landmarks-"
DEFAULT_LANDMARK_ALIGNER = "dlib-hog"
_TOKEN = re.compile(r"(?P<aligner>.+)-(?P<key>[0-9a-f]{8})")

#: Entry-point group ``fer_bench.aligners``; targets are ``AlignSettings`` objects.
ALIGNERS: Registry[AlignSettings] = Registry(
    "aligner", "fer_bench.aligners", instances_of(AlignSettings, "aligner"),
    option="--fer-alignment")
ALIGNERS.register("dlib-hog", AlignSettings(detector="hog"), builtin=True)
ALIGNERS.register("dlib-cnn", AlignSettings(detector="cnn"), builtin=True)


def check_alignment(name: str) -> str:
    """``name`` when it is ``none`` or a registered aligner; else ``ConfigError`` with close
    names."""
    if name != NO_ALIGNMENT:
        ALIGNERS.get(name)
    return name


def aligner_token(aligner: str) -> str:
    """``<aligner>-<8 hex of the settings key>``, e.g. ``dlib-hog-1a2b3c4d``. Hashes the dlib
    model files (not dlib itself): ``AlignError`` with the install hint when they are
    missing."""
    return f"{aligner}-{settings_key(ALIGNERS.get(aligner))[:8]}"


def cell_alignment(aligner: str, *, landmarks: bool = False) -> str:
    """A cell's ``alignment`` field for axis value ``aligner`` ("none" or an aligner name).

    ``landmarks``: the cell's augmentation needs per-image inclination; with ``none`` the
    source images are kept and ``DEFAULT_LANDMARK_ALIGNER`` supplies the landmarks.
    """
    check_alignment(aligner)
    if aligner != NO_ALIGNMENT:
        return aligner_token(aligner)
    if landmarks:
        return LANDMARKS_PREFIX + aligner_token(DEFAULT_LANDMARK_ALIGNER)
    return NO_ALIGNMENT


@dataclass(frozen=True)
class AlignmentUse:
    """A parsed cell ``alignment`` field: the aligner's ``token`` (``dlib-hog-1a2b3c4d``),
    its ``aligner`` name, and whether the cell uses its ``images`` (else only landmarks)."""

    token: str
    aligner: str
    images: bool


def parse_cell_alignment(identity: str) -> AlignmentUse | None:
    """None for ``none``; else what the cell uses. ``ConfigError`` for a malformed value."""
    if identity == NO_ALIGNMENT:
        return None
    images = not identity.startswith(LANDMARKS_PREFIX)
    token = identity.removeprefix(LANDMARKS_PREFIX)
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise ConfigError(f"alignment {identity!r}: expected 'none', '<aligner>-<8 hex>' or "
                          f"'{LANDMARKS_PREFIX}<aligner>-<8 hex>'")
    return AlignmentUse(token, match.group("aligner"), images)


@dataclass(frozen=True)
class CleanAlignment:
    """One aligner's output for the rows of a ``CleanDataset``, in its order.

    ``token``: ``<aligner>-<8 hex>``; ``images`` uint8 [M, 48, 48] (aligned, or the source
    image where ``aligned`` is False); ``aligned`` bool [M]; ``inclination`` float32 [M]:
    the eye line's inclination in the SOURCE image, degrees, positive = turned clockwise on
    screen, NaN where not aligned; ``coverage``: share aligned.
    """

    token: str
    aligner: str
    images: np.ndarray
    aligned: np.ndarray
    inclination: np.ndarray

    def __len__(self) -> int:
        return int(self.aligned.shape[0])

    @property
    def coverage(self) -> float:
        return float(self.aligned.mean()) if len(self) else 0.0

    def take(self, index: np.ndarray) -> CleanAlignment:
        return replace(self, images=self.images[index], aligned=self.aligned[index],
                       inclination=self.inclination[index])

    def inclination_as_trained(self, aligned_images: bool) -> np.ndarray:
        """float32 [M]: the inclination of each image as a cell sees it. On the aligner's
        images (``aligned_images``) an aligned face is level (its eye centres are mapped to
        one height): 0; elsewhere the source inclination (NaN without landmarks)."""
        if not aligned_images:
            return self.inclination.astype(np.float32)
        return np.where(self.aligned, 0.0, self.inclination).astype(np.float32)


def _rows_of(raw: RawDataset, names: np.ndarray) -> RawDataset:
    """The rows of ``raw`` whose names are in ``names`` (canonical order kept)."""
    keep = np.isin(np.asarray(raw.names, dtype=str), np.asarray(names, dtype=str))
    return replace(raw, images=raw.images[keep], votes=raw.votes[keep], usage=raw.usage[keep],
                   names=raw.names[keep])


def align_source(raw: RawDataset, aligner: str, *, names: np.ndarray | None = None,
                 workers: int | None = None, progress: Any = True,
                 cache_dir: str | os.PathLike | None = None) -> AlignResult:
    """The alignment of ``raw`` by ``aligner``: the whole source's cached one when there is
    one (``fer-bench data align`` writes it); otherwise the whole source is aligned and
    cached, or, given ``names`` (e.g. a small profile subset's), only those rows (cached
    under their own key). Raises ``AlignError`` (install hint) when dlib or a model file is
    missing and no cache serves."""
    settings = ALIGNERS.get(aligner)
    result = load_aligned(raw, settings, cache_dir=cache_dir)
    if result is None:
        source = raw if names is None else _rows_of(raw, names)
        result = align_dataset(source, settings, workers=workers, progress=progress,
                               cache_dir=cache_dir)
    return result


def align_clean(raw: RawDataset, clean: CleanDataset, aligner: str, *,
                result: AlignResult | None = None, rows_only: bool = False,
                workers: int | None = None, progress: Any = True,
                cache_dir: str | os.PathLike | None = None) -> CleanAlignment:
    """``aligner``'s output for ``clean``'s rows, matched by image name. ``result``: an
    alignment of ``raw`` (or of a part holding ``clean``'s rows) already at hand; else
    ``align_source`` (``rows_only``: only ``clean``'s rows when none is cached)."""
    token = aligner_token(aligner)
    if result is None:
        names = clean.names if rows_only and len(clean) < len(raw) else None
        result = align_source(raw, aligner, names=names, workers=workers, progress=progress,
                              cache_dir=cache_dir)
    position = {str(name): i for i, name in enumerate(result.names)}
    try:
        index = np.fromiter((position[str(name)] for name in clean.names), dtype=np.int64,
                            count=len(clean))
    except KeyError as exc:
        raise DataError(f"{raw.report.path}: image {exc.args[0]} of the cleaned data is not in "
                        f"the alignment of its source") from None
    return CleanAlignment(token, aligner, result.images[index], result.aligned[index].astype(bool),
                          result.inclination[index].astype(np.float32))


def with_alignment(clean: CleanDataset, alignment: CleanAlignment | None) -> CleanDataset:
    """``clean`` carrying ``alignment`` (same rows; its own images and fingerprint kept)."""
    if alignment is not None and len(alignment) != len(clean):
        raise DataError(f"alignment of {len(alignment)} images given for {len(clean)} images")
    return replace(clean, alignment=alignment)


def alignment_for_cell(clean: CleanDataset, identity: str) -> tuple[CleanAlignment | None, bool]:
    """(the ``CleanAlignment`` a cell of alignment ``identity`` uses, whether it trains on
    the aligned images). ``ConfigError`` when ``clean`` carries none or another aligner's."""
    use = parse_cell_alignment(identity)
    if use is None:
        return None, False
    have = getattr(clean, "alignment", None)
    if have is None or have.token != use.token:
        given = "no alignment" if have is None else f"alignment {have.token!r}"
        raise ConfigError(f"the cell's alignment {identity!r} needs the data aligned by "
                          f"{use.token!r}; the data given carries {given} "
                          "(fer_bench.data.alignment.align_clean + with_alignment)")
    return have, use.images


__all__ = ["ALIGNERS", "NO_ALIGNMENT", "DEFAULT_LANDMARK_ALIGNER", "CleanAlignment",
           "align_source", "align_clean", "with_alignment", "cell_alignment", "aligner_token",
           "parse_cell_alignment", "alignment_for_cell", "check_alignment"]
