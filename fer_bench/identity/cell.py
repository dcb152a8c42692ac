"""The cell: the one identity of a result (SPEC "Cell identity").

A ``Cell`` holds everything that changes a result: the model and its release, the dataset
variant (label treatment, augmentation set in the recipe, alignment), the releases of the
third-party plug-ins it uses (``plugin_releases``), the recipe
(``TrainConfig``: loss, init, epochs, lr, batch, input size ...), the test split, the seed,
the fingerprint of the exact images used, the device type and effective precision, and
``PROTOCOL_VERSION``. Two results may be reused or averaged together only when their cells
agree on everything but the seed.

``cell_id`` is the one function that names a cell: the readable id
(``vgg16-n8-ordinary-s0``, then only the non-default axes: ``...-loss=pld-aug=flip_rot20``),
the pytest ids (``axis_token`` per axis) and the store file name (``Cell.file_name``: the
readable id made filesystem-safe plus a short hash of the exact identity, so two cells can
never share a file).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from fer_bench.data.align.axis import DEFAULT_ALIGNMENT
from fer_bench.data.labels.treatments import nhot_of, variant_token
from fer_bench.errors import ConfigError
from fer_bench.fileio import file_sha256  # noqa: F401  (re-exported: init weights files)
from fer_bench.identity.config import (
    DEFAULT_AUGMENTATION,
    DEFAULT_COMPILE,
    DEFAULT_INIT,
    DEFAULT_LOSS,
    TrainConfig,
)

#: Bump whenever splits, label targets (N-hot, literature modes), metrics, augmentation
#: outputs or runner semantics change: every stored result of an older protocol then
#: becomes a miss. ``tests/test_protocol_golden.py`` fails when those outputs change
#: without a bump. History: 1 = first slice; 2 = independent N-hot / RR streams
#: (d36edc4) and this identity.
PROTOCOL_VERSION = 2

#: Axes shown in a readable id only when they differ from these values.
OPTIONAL_AXES: dict[str, tuple[str, str]] = {   # axis -> (id prefix, default)
    "loss": ("loss", DEFAULT_LOSS),
    "augmentation": ("aug", DEFAULT_AUGMENTATION),
    "init": ("init", DEFAULT_INIT),
    "alignment": ("align", DEFAULT_ALIGNMENT),
    "compile": ("compile", DEFAULT_COMPILE),
}
INIT_CHOICES = ("scratch", "imagenet", "file:PATH")
PRECISIONS = ("fp32", "bf16")
#: What ``--fer-precision`` takes: "auto" resolves per device and model (``effective_precision``).
PRECISION_CHOICES = ("auto", *PRECISIONS)
_HASH_CHARS = 12
#: Cell fields added after the identity's schema settled (as ``config.ADDED_FIELDS``):
#: ``to_dict`` writes one only when it differs from this default, so every identity stored
#: before it existed keeps its digest and store file.
ADDED_CELL_FIELDS: dict[str, Any] = {"plugin_releases": ()}


@dataclass(frozen=True)
class Cell:
    """One result's complete identity. Frozen and hashable; JSON via ``to_dict``.

    ``variant``: label treatment of the training targets, a name in the label registry
    (``nhot-1`` .. ``nhot-8``, Microsoft's ``ms-*`` modes). ``dataset``: fingerprint of the exact cleaned images
    (a subset has its own). ``device_type``: "cpu" | "cuda" | "mps"; ``precision``: the
    effective one ("fp32", or "bf16" under CUDA or CPU bf16 autocast). ``model_release``:
    "dist==version" of the distribution that registers the model ("in-process" for
    ``register_model``). ``alignment``: the aligner output the cell uses, "none",
    ``<aligner>-<settings hash>`` (aligned images) or ``landmarks-<aligner>-<hash>`` (source
    images, the aligner's landmarks for the augmentation): ``fer_bench.data.align.axis``.
    ``plugin_releases``: (axis, "dist==version" or "in-process") of every plug-in the cell
    uses that fer_bench does not build in (a loss, augmentation set, label treatment, split
    kind or aligner of another distribution), sorted by axis; filled by
    ``fer_bench.training.resolve.resolve_cell``. A mapping is accepted and stored sorted;
    in ``to_dict`` it is a mapping, absent when empty (``ADDED_CELL_FIELDS``), so an upgraded
    plug-in makes another cell while built-in cells keep their digests.
    """

    model: str
    variant: str
    split: str
    seed: int
    recipe: TrainConfig = TrainConfig()
    model_release: str = ""
    alignment: str = DEFAULT_ALIGNMENT
    dataset: str = ""
    device_type: str = "cpu"
    precision: str = "fp32"
    protocol: int = PROTOCOL_VERSION
    plugin_releases: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "plugin_releases", _release_pairs(self.plugin_releases))

    # ------------------------------------------------------------ naming
    @property
    def id(self) -> str:
        """The readable id, e.g. ``vgg16-n8-ordinary-s0-loss=pld`` (see ``cell_id``)."""
        return cell_id(self)

    @property
    def nhot(self) -> int | None:
        """N of an N-hot label treatment (``LabelTreatment.nhot``), else None."""
        return nhot_of(self.variant)

    def axis(self, name: str) -> Any:
        """The value of axis ``name`` (a field of the cell or of its recipe)."""
        if name in {f.name for f in fields(self)}:
            return getattr(self, name)
        return getattr(self.recipe, name)

    def digest(self) -> str:
        """Short sha256 (12 hex chars) of the exact identity (``to_dict`` as canonical JSON)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:_HASH_CHARS]

    def file_name(self) -> str:
        """Store file name: ``<safe readable id>-<digest>.json``. Never leaves its folder,
        never collides (the digest covers every field, the exact model name included)."""
        return f"{safe_component(self.id, limit=120)}-{self.digest()}.json"

    def folder_name(self) -> str:
        """Store sub-folder of this cell's model (filesystem-safe)."""
        return safe_component(self.model, limit=60)

    # ------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields (the recipe's ``TrainConfig.to_dict``, ``plugin_releases`` as a
        mapping), except an ``ADDED_CELL_FIELDS`` one left at its default."""
        data = asdict(self)
        data["recipe"] = self.recipe.to_dict()
        data["plugin_releases"] = dict(self.plugin_releases)
        for name, default in ADDED_CELL_FIELDS.items():
            if getattr(self, name) == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """Inverse of ``to_dict``; ValueError on missing or unknown fields."""
        if not isinstance(data, dict):
            raise ValueError(f"cell identity must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        missing = {"model", "variant", "split", "seed"} - set(data)
        if unknown or missing:
            raise ValueError(f"bad cell identity: unknown {sorted(unknown)}, missing {sorted(missing)}")
        values = dict(data)
        values["recipe"] = TrainConfig.from_dict(values.get("recipe", {}))
        return cls(**values)

    def with_axes(self, **changes: Any) -> Cell:
        """A copy with cell fields and/or recipe fields replaced (``loss=...`` goes to the recipe)."""
        own = {f.name for f in fields(self)}
        recipe_changes = {k: v for k, v in changes.items() if k not in own}
        cell_changes = {k: v for k, v in changes.items() if k in own}
        if recipe_changes:
            cell_changes["recipe"] = replace(cell_changes.get("recipe", self.recipe), **recipe_changes)
        return replace(self, **cell_changes)


def _release_pairs(releases: Mapping[str, str] | Iterable[tuple[str, str]]
                   ) -> tuple[tuple[str, str], ...]:
    """``Cell.plugin_releases`` as given (a mapping or (axis, release) pairs) -> sorted pairs."""
    items = releases.items() if isinstance(releases, Mapping) else releases
    return tuple(sorted((str(axis), str(release)) for axis, release in items))


# ----------------------------------------------------------------- the id function
def axis_token(axis: str, value: Any) -> str:
    """The id text of one axis value: model -> as is; variant -> its label treatment's
    token (``nhot-3`` -> ``n3``, ``LabelTreatment.token``; an unregistered one as is); split
    -> as is; seed 0 -> ``s0``; loss/augmentation/init/alignment/compile -> ``loss=pld`` /
    ``aug=flip_rot20`` / ``init=file-1a2b3c4d`` / ``align=dlib-hog-a7589fb3`` / ``compile=eval``."""
    if axis == "variant":
        return variant_token(str(value))
    if axis == "seed":
        return f"s{value}"
    if axis in OPTIONAL_AXES:
        text = str(value)
        if text.startswith("file:"):
            text = "file-" + text.removeprefix("file:")[:8]
        return f"{OPTIONAL_AXES[axis][0]}={text}"
    return str(value)


def cell_id(cell: Cell) -> str:
    """``<model>-<variant>-<split>-s<seed>`` then ``-<axis>=<value>`` for each optional axis
    (loss, augmentation, init, alignment, compile) whose value is not the default."""
    parts = [axis_token(a, cell.axis(a)) for a in ("model", "variant", "split", "seed")]
    parts += [axis_token(a, cell.axis(a)) for a, (_, default) in OPTIONAL_AXES.items()
              if cell.axis(a) != default]
    return "-".join(parts)


_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                     *(f"lpt{i}" for i in range(10))}


def safe_component(text: str, limit: int = 80) -> str:
    """``text`` as one safe path component: ASCII letters, digits and ``._=-`` only, no
    leading dot, at most ``limit`` chars, never empty, ``.``/``..`` or a Windows device
    name ("../x" -> "x", "a/b" -> "a_b", "con" -> "con_", "ü" -> "u")."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_text).lstrip("._")[:limit].rstrip(".")
    if not cleaned:
        cleaned = "cell"
    stem, dot, rest = cleaned.partition(".")
    if stem.lower() in _WINDOWS_RESERVED:
        cleaned = f"{stem}_{dot}{rest}"
    return cleaned


# ----------------------------------------------------------------- resolving axis values
def effective_precision(device_type: str, requested: str = "auto", *,
                        model_cpu_precision: str = "fp32", cpu_has_bf16: bool = True) -> str:
    """The precision a cell trains in, "fp32" or "bf16" (bf16 autocast over fp32 weights).

    ``requested`` ("auto" | "fp32" | "bf16", ``--fer-precision``): on CUDA "auto" is bf16; on
    a CPU "auto" is the model's ``ModelSpec.cpu_precision`` when the CPU has native bf16
    units (``cpu_has_bf16``: AVX-512 BF16 or AMX), else fp32; MPS trains in fp32. Raises
    ``ConfigError`` for another value, or for "bf16" on a CPU without bf16 units (there it
    is emulated, several times slower than fp32)."""
    if requested not in PRECISION_CHOICES:
        raise ConfigError(f"--fer-precision: unknown precision {requested!r}; valid: "
                          f"{', '.join(PRECISION_CHOICES)}")
    if device_type == "cuda":
        return "fp32" if requested == "fp32" else "bf16"
    if device_type != "cpu":
        return "fp32"
    if requested == "bf16" and not cpu_has_bf16:
        raise ConfigError("--fer-precision bf16: this CPU has no native bf16 units (AVX-512 "
                          "BF16 or AMX); use fp32")
    if requested == "auto":
        return model_cpu_precision if cpu_has_bf16 else "fp32"
    return requested


@dataclass(frozen=True)
class InitChoice:
    """A resolved ``init`` axis value: ``name`` goes into the identity ("scratch",
    "imagenet", "file:<sha256>"); ``path`` is the local weights file to load, if any."""

    name: str
    path: Path | None = None


def resolve_init(text: str) -> InitChoice:
    """``scratch`` | ``imagenet`` | ``file:PATH`` -> ``InitChoice``; a file is identified by
    its sha256, so renaming it keeps its results and editing it does not.

    Raises ``ConfigError`` for another value or a missing file.
    """
    text = str(text).strip()
    if text in ("scratch", "imagenet"):
        return InitChoice(text)
    if text.startswith("file:"):
        raw = text.removeprefix("file:")
        if re.fullmatch(r"[0-9a-f]{64}", raw):   # already resolved
            return InitChoice(text)
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ConfigError(f"--fer-init {text!r}: weights file {path} does not exist")
        return InitChoice(f"file:{file_sha256(path)}", path.resolve())
    import difflib

    close = difflib.get_close_matches(text, ["scratch", "imagenet", "file:"], n=1, cutoff=0.5)
    hint = f"; did you mean: {close[0]}?" if close else ""
    raise ConfigError(f"unknown init {text!r} (--fer-init){hint} valid: {', '.join(INIT_CHOICES)}")
