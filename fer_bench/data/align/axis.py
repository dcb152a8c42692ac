"""Alignment as a dataset variant (issue 11, report 4.3.2 and 5.3.2): the ``alignment`` axis.

An axis value is ``"none"`` or an aligner name of ``ALIGNERS`` (``dlib-hog``, ``dlib-cnn``;
entry-point group ``fer_bench.aligners``, targets ``AlignSettings``). The cleaned data's
fingerprint hashes names and votes, not pixels, so a cell's ``alignment`` field carries
the aligner's identity itself (``cell_alignment``), ``<aligner>-<first 8 hex of
align.settings.settings_key>`` (the settings, the sha256 of every dlib model file and dlib's
version):

* ``none``: no aligner output is used;
* ``dlib-hog-1a2b3c4d``: the cell trains and tests on that aligner's images: aligned where
  it found usable landmarks, the source image elsewhere (report 4.3.2, 5.2.3);
* ``landmarks-dlib-hog-1a2b3c4d``: the source images, with that aligner's per-image
  landmarks (inclination) for an augmentation set that needs them (the adaptive sets,
  ``training.augment``) on unaligned images. ``DEFAULT_LANDMARK_ALIGNER`` supplies them.

``resolve_alignment(aligner, augmentation)`` gives a cell's field and what it uses.
``align_clean(raw, clean, aligner)`` runs the aligner (or reads its cache: ``data.align``)
and returns ``clean`` with a ``CleanAlignment`` attached (``with_alignment``,
``clean.alignment``), in the cleaned data's row order, matched by image name; an
``AlignmentMemo`` does that once per source, cleaned data and aligner in a session.
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

from fer_bench.data.align.cache import load_aligned
from fer_bench.data.align.result import AlignResult
from fer_bench.data.align.run import align_dataset
from fer_bench.data.align.settings import AlignSettings, settings_key
from fer_bench.data.schema import CleanDataset, RawDataset
from fer_bench.errors import ConfigError, DataError
from fer_bench.registry import Registry, instances_of

#: The ``alignment`` of a cell that uses no aligner output (the identity default).
DEFAULT_ALIGNMENT = "none"
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
    if name != DEFAULT_ALIGNMENT:
        ALIGNERS.get(name)
    return name


def aligner_token(aligner: str) -> str:
    """``<aligner>-<8 hex of the settings key>``, e.g. ``dlib-hog-1a2b3c4d``. Hashes the dlib
    model files and dlib's version: ``AlignError`` with the install hint when either is
    missing."""
    return f"{aligner}-{settings_key(ALIGNERS.get(aligner))[:8]}"


@dataclass(frozen=True)
class AlignmentUse:
    """A parsed cell ``alignment`` field: the aligner's ``token`` (``dlib-hog-1a2b3c4d``),
    its ``aligner`` name, and whether the cell uses its ``images`` (else only landmarks)."""

    token: str
    aligner: str
    images: bool

    @property
    def identity(self) -> str:
        """The cell's ``alignment`` field: the token, with ``LANDMARKS_PREFIX`` for landmarks."""
        return self.token if self.images else LANDMARKS_PREFIX + self.token


def _use(aligner: str, landmarks: bool) -> AlignmentUse | None:
    check_alignment(aligner)
    if aligner != DEFAULT_ALIGNMENT:
        return AlignmentUse(aligner_token(aligner), aligner, True)
    if landmarks:
        return AlignmentUse(aligner_token(DEFAULT_LANDMARK_ALIGNER), DEFAULT_LANDMARK_ALIGNER, False)
    return None


def cell_alignment(aligner: str, *, landmarks: bool = False) -> str:
    """A cell's ``alignment`` field for axis value ``aligner`` ("none" or an aligner name).

    ``landmarks``: the cell's augmentation needs per-image inclination; with ``none`` the
    source images are kept and ``DEFAULT_LANDMARK_ALIGNER`` supplies the landmarks.
    """
    use = _use(aligner, landmarks)
    return DEFAULT_ALIGNMENT if use is None else use.identity


def resolve_alignment(aligner: str, *, landmarks: bool) -> tuple[str, AlignmentUse | None]:
    """(the ``alignment`` field, what it uses or None) of a cell with axis value ``aligner``
    whose augmentation does (``landmarks``) or does not read per-image landmarks
    (``fer_bench.training.augment.sets.needs_landmarks``)."""
    use = _use(aligner, landmarks)
    return (DEFAULT_ALIGNMENT if use is None else use.identity), use


def parse_cell_alignment(identity: str) -> AlignmentUse | None:
    """None for ``none``; else what the cell uses. ``ConfigError`` for a malformed value."""
    if identity == DEFAULT_ALIGNMENT:
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
    screen, NaN where not aligned.
    """

    token: str
    images: np.ndarray
    aligned: np.ndarray
    inclination: np.ndarray

    def __len__(self) -> int:
        return int(self.aligned.shape[0])

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
                result: AlignResult | None = None, rows_only: bool = False) -> CleanDataset:
    """``clean`` with ``aligner``'s output for its rows attached (``with_alignment``), matched
    by image name. ``result``: an alignment of ``raw`` (or of a part holding ``clean``'s
    rows) already at hand; else ``align_source`` (``rows_only``: only ``clean``'s rows when
    none is cached)."""
    token = aligner_token(aligner)
    if result is None:
        names = clean.names if rows_only and len(clean) < len(raw) else None
        result = align_source(raw, aligner, names=names)
    position = {str(name): i for i, name in enumerate(result.names)}
    try:
        index = np.fromiter((position[str(name)] for name in clean.names), dtype=np.int64,
                            count=len(clean))
    except KeyError as exc:
        raise DataError(f"{raw.report.path}: image {exc.args[0]} of the cleaned data is not in "
                        f"the alignment of its source") from None
    return with_alignment(clean, CleanAlignment(
        token, result.images[index], result.aligned[index].astype(bool),
        result.inclination[index].astype(np.float32)))


def with_alignment(clean: CleanDataset, alignment: CleanAlignment | None) -> CleanDataset:
    """``clean`` carrying ``alignment`` (same rows; its own images and fingerprint kept)."""
    if alignment is not None and len(alignment) != len(clean):
        raise DataError(f"alignment {alignment.token!r} has {len(alignment)} images, the data "
                        f"it is given for ({clean.label}, cleaning {clean.cleaning!r}, "
                        f"fingerprint {clean.fingerprint}) has {len(clean)}")
    return replace(clean, alignment=alignment)


class AlignmentMemo:
    """Aligned cleaned data, each piece made once (e.g. per pytest session).

    Per (source fingerprint, aligner): the whole source's alignment (``align_source``), which
    serves every cleaned data of that source. Per (source, cleaned data fingerprint,
    aligner): the cleaned data with the aligner's output attached. A failure is kept under
    the key of what failed and raised again without trying again: the source's alignment
    (e.g. dlib missing: ``AlignError``) for every cleaned data of that source and aligner,
    the matching of one cleaned data's rows (``DataError``) for that one only.
    """

    def __init__(self) -> None:
        self._sources: dict[tuple[str, str], AlignResult | Exception] = {}
        self._cleans: dict[tuple[str, str, str], CleanDataset | Exception] = {}

    def aligned(self, raw: RawDataset, clean: CleanDataset, aligner: str, *,
                rows_only: bool = False) -> CleanDataset:
        """``clean`` (cleaned from ``raw``) with ``aligner``'s output (``align_clean``).
        ``rows_only`` (e.g. a profile subset): unless the whole source's alignment is at
        hand, only ``clean``'s rows are aligned when no cache of the whole source serves."""
        key = (raw.fingerprint, clean.fingerprint, aligner)
        if key not in self._cleans:
            try:
                source = (self._sources.get((raw.fingerprint, aligner)) if rows_only
                          else self._source(raw, aligner))
                self._cleans[key] = align_clean(raw, clean, aligner, result=_raised(source),
                                                rows_only=True)
            except Exception as exc:
                self._cleans[key] = exc
        return _raised(self._cleans[key])

    def _source(self, raw: RawDataset, aligner: str) -> AlignResult | Exception:
        key = (raw.fingerprint, aligner)
        if key not in self._sources:
            try:
                self._sources[key] = align_source(raw, aligner)
            except Exception as exc:
                self._sources[key] = exc
        return self._sources[key]


def _raised(value: Any) -> Any:
    """``value``, or raise it when it is a kept failure."""
    if isinstance(value, Exception):
        raise value
    return value


def alignment_for_cell(clean: CleanDataset, identity: str) -> tuple[CleanAlignment | None, bool]:
    """(the ``CleanAlignment`` a cell of alignment ``identity`` uses, whether it trains on
    the aligned images). ``ConfigError`` when ``clean`` carries none or another aligner's."""
    use = parse_cell_alignment(identity)
    if use is None:
        return None, False
    have = clean.alignment
    if have is None or have.token != use.token:
        given = "no alignment" if have is None else f"alignment {have.token!r}"
        raise ConfigError(f"the cell's alignment {identity!r} needs the data aligned by "
                          f"{use.token!r}; the data given carries {given} "
                          "(fer_bench.data.align.axis.align_clean)")
    return have, use.images


__all__ = ["ALIGNERS", "DEFAULT_LANDMARK_ALIGNER", "LANDMARKS_PREFIX", "AlignmentMemo",
           "AlignmentUse", "CleanAlignment", "align_source", "align_clean", "with_alignment",
           "cell_alignment", "resolve_alignment", "aligner_token",
           "parse_cell_alignment", "alignment_for_cell", "check_alignment"]
