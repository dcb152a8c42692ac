"""Named run profiles of the pytest plugin (``--fer-profile``).

A profile only fills in what the user did not set: CLI > env > ini > profile > default.
Its knobs that change what a cell learns (epochs, augmentation) go through
``fer_bench.training.resolve.resolve_config`` as overrides, so there is one config object.
A profile is named by a ``ProfileName``; what differs between profiles is read from the
``Profile``'s fields (``comparable``, ``lighter``, ...), never from its name's text.
"""

from __future__ import annotations

from dataclasses import dataclass

from fer_bench.strenum import StrEnum


class ProfileName(StrEnum):
    """The profiles there are (``--fer-profile``; a record's ``profile`` holds the text)."""

    DEFAULT = "default"
    SMOKE = "smoke"
    CPU = "cpu"
    PAPER = "paper"


@dataclass(frozen=True)
class Profile:
    """A named set of defaults for a benchmark run.

    ``subset``: number of cleaned images kept (a fixed, seeded subset; ``None`` = all).
    ``epochs``: epochs per cell (``None`` = the model's own setting or SPEC's 40).
    ``models``: default model names (``None`` = the plugin's default rule).
    ``augmentation``: a ``fer_bench.training.augment.sets`` set name (``None`` = the model's
    setting or "none").
    ``comparable``: its numbers can stand beside the study's; False for a pipeline check
    (few epochs on a small slice), which the leaderboard marks as such.
    ``lighter``: the profiles that cost less, lightest first (what a run too long for a
    CPU is pointed to).
    """

    name: ProfileName
    subset: int | None = None
    epochs: int | None = None
    models: tuple[str, ...] | None = None
    augmentation: str | None = None
    description: str = ""
    comparable: bool = True
    lighter: tuple[ProfileName, ...] = (ProfileName.SMOKE, ProfileName.CPU)

    #: Seed of the subset draw; fixed so every machine and shard sees the same images.
    subset_seed: int = 0


PROFILES: dict[ProfileName, Profile] = {
    ProfileName.DEFAULT: Profile(
        name=ProfileName.DEFAULT,
        description="no profile: full data, each model's own settings",
    ),
    ProfileName.SMOKE: Profile(
        name=ProfileName.SMOKE,
        subset=4000,
        epochs=2,
        models=("small_cnn",),
        augmentation="none",
        description="~4000 cleaned images, 2 epochs, small_cnn: the whole grid in minutes on a CPU",
        comparable=False,
        lighter=(),
    ),
    ProfileName.CPU: Profile(
        name=ProfileName.CPU,
        subset=None,
        epochs=3,
        models=("fast_resnet",),
        augmentation=None,
        description="full data on a CPU: fast_resnet and its own recipe (one-cycle SGD, "
                    "batched flip/shift) over 3 epochs, about 5 minutes per cell on 2 quiet cores",
        lighter=(ProfileName.SMOKE,),
    ),
    ProfileName.PAPER: Profile(
        name=ProfileName.PAPER,
        subset=None,
        epochs=None,
        models=None,
        augmentation="flip_rot20",
        description="the study's settings: full data, 40 epochs unless the model says "
                    "otherwise, Base+Flip+Rotate+-20 (4x, report 4.3.1's best)",
    ),
}


def get_profile(name: str | None) -> Profile:
    """The profile called ``name`` (``None`` or "" = "default"); ValueError lists the valid ones."""
    profile = profile_named(name or ProfileName.DEFAULT)
    if profile is None:
        raise ValueError(f"unknown fer_bench profile {name!r}; valid: {', '.join(PROFILES)}")
    return profile


def profile_named(text: str) -> Profile | None:
    """The profile whose name is ``text`` (a record's ``profile``), None for any other text
    ("" = no profile chosen, or a name this version does not know)."""
    try:
        return PROFILES[ProfileName(text)]
    except ValueError:
        return None


# --------------------------------------------------------------------------- grid options
#: The study's four models (report 4.4) and the classical four used when those are absent.
STUDY_MODELS: tuple[str, ...] = ("vgg16", "ran", "dan", "mten")
CLASSICAL_MODELS: tuple[str, ...] = ("vgg16", "resnet18", "densenet121", "mobilenetv2")
DEFAULT_NHOT = "1-8"
DEFAULT_SPLITS = "ordinary,complex"
DEFAULT_SEEDS = "0"
DEFAULT_INIT = "scratch"


def parse_int_list(text: str, *, what: str, low: int | None = None, high: int | None = None) -> tuple[int, ...]:
    """``"1,3,8"``, ``"1-8"`` or ``"0,2-4"`` -> sorted unique ints; ValueError names ``what``."""
    values: set[int] = set()
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (int(x) for x in part.split("-", 1))
                if last < first:
                    raise ValueError
                values.update(range(first, last + 1))
            else:
                values.add(int(part))
        except ValueError:
            raise ValueError(f"{what}: cannot read {part!r} (use e.g. 1,3,8 or 1-8)") from None
    if not values:
        raise ValueError(f"{what}: empty list {text!r}")
    for value in values:
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{what}: {value} is outside {low}..{high}")
    return tuple(sorted(values))


def parse_name_list(text: str, *, what: str) -> tuple[str, ...]:
    """``"a, b,a"`` -> ``("a", "b")`` (order kept, duplicates dropped)."""
    names = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    if not names:
        raise ValueError(f"{what}: empty list {text!r}")
    return names


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with 1 <= i <= n -> ``(i, n)``; ValueError otherwise."""
    try:
        index_text, count_text = str(text).split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"--fer-shard: expected i/n such as 2/4, got {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"--fer-shard: need 1 <= i <= n, got {text!r}")
    return index, count


def select_shard(items: list, shard: tuple[int, int] | None) -> list:
    """Shard ``(i, n)`` keeps the items whose position p in ``items`` has p % n == i - 1."""
    if shard is None:
        return list(items)
    index, count = shard
    return [item for position, item in enumerate(items) if position % count == index - 1]
