"""The embedded synthetic data set: procedurally drawn faces with crowd-style votes.

Lets every stage (clean, split, N-hot, training, benchmark) run without the real FERPlus
files, in seconds. Each image is a 48x48 grayscale face (head ellipse, eyes, brows, nose,
mouth) with pose, scale, lighting, contrast and noise jitter. Its expression is a MIXTURE
of the 8 emotions: Dirichlet weights with one dominant emotion; each emotion has a
prototype of facial parameters (brow height and tilt, eye openness, mouth curvature,
openness, width, one-sided smirk, nose wrinkle) and the face shows the weighted blend.
Ten simulated taggers then vote from the same mixture (plus a small, per-image chance of
"unknown" / "not a face"), so the votes have real complexity levels and a label signal
that a model can learn from the pixels.

The mixture is the image's hidden true distribution: it travels with the data as
``RawDataset.truth`` (``GroundTruth``), so a model's prediction can be scored against what
the taggers were sampling, not only against their votes. ``make_synthetic(taggers=T)``
draws T taggers' votes for the SAME faces and mixtures (only the votes differ; T = 10 is
the default set, bit for bit); as a data source it is ``synthetic:taggers=T``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fer_bench.data.schema import EMOTIONS, IMAGE_SIZE, USAGES, GroundTruth, LoadReport, RawDataset
from fer_bench.errors import DataPathError

#: Bump when the generator changes what it draws; part of the fingerprint.
GENERATOR_VERSION = 1
#: Simulated taggers per image of the default set (FERPlus has 10 per image).
N_TAGGERS = 10
#: The data source name of the embedded set; ``synthetic:taggers=T`` varies the taggers.
SOURCE_NAME = "synthetic"
#: Second entropy word of the votes of a tagger count other than ``N_TAGGERS``:
#: ``default_rng([seed, TAGGER_STREAM, taggers])``, so the faces' stream never shifts.
TAGGER_STREAM = 3
#: Options of a ``synthetic:key=value,...`` source name.
SOURCE_OPTIONS = ("taggers",)
#: How often each emotion is the dominant one (FERPlus-like imbalance, neutral first).
DOMINANT_PRIOR = np.array([0.30, 0.24, 0.12, 0.12, 0.09, 0.04, 0.05, 0.04])
#: Usage shares Training / PublicTest / PrivateTest.
USAGE_SHARES = (0.8, 0.1, 0.1)

# Facial parameters per emotion, columns:
# brow_raise (+ up), brow_tilt (+ inner ends down), eye_open (0 shut .. 1 wide),
# mouth_curve (+ smile, - frown), mouth_open (0 .. 1), mouth_width (0 narrow .. 1 wide),
# smirk (one corner up), wrinkle (nose wrinkle lines).
_PROTOTYPES = np.array([
    # raise tilt  eye  curve open width smirk wrinkle
    [0.0,  0.0,  0.5,  0.0,  0.0, 0.5,  0.0,  0.0],   # neutral
    [0.2,  0.0,  0.3,  1.0,  0.45, 1.0, 0.0,  0.0],   # happiness
    [1.0,  0.0,  1.0,  0.0,  1.0,  0.2, 0.0,  0.0],   # surprise
    [0.1, -1.0,  0.3, -1.0,  0.0,  0.45, 0.0, 0.0],   # sadness
    [-0.8, 1.0,  0.6, -0.4,  0.2,  0.55, 0.0, 0.3],   # anger
    [-0.5, 0.5,  0.15, -0.7, 0.3,  0.6, 0.3,  1.0],   # disgust
    [0.8, -0.8,  1.0, -0.5,  0.6,  0.7, 0.0,  0.0],   # fear
    [0.0,  0.2,  0.4,  0.0,  0.0,  0.5, 1.0,  0.0],   # contempt
], dtype=np.float32)
_CHUNK = 500


def _soft(distance_inside: np.ndarray, sharpness: float = 2.0) -> np.ndarray:
    """Anti-aliased mask from a signed distance (positive inside, in pixels)."""
    return np.clip(0.5 + sharpness * distance_inside, 0.0, 1.0)


def _draw_faces(face: dict[str, np.ndarray], noise: np.ndarray) -> np.ndarray:
    """Render a batch of B faces: every value in ``face`` is float32 [B]; noise [B, 48, 48]."""
    b = noise.shape[0]
    p = {k: v.reshape(b, 1, 1) for k, v in face.items()}
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    dx, dy = xs - p["cx"], ys - p["cy"]
    cos, sin = np.cos(p["angle"]), np.sin(p["angle"])
    u = (dx * cos + dy * sin) / p["scale"]      # face coordinates: u right, v down, px
    v = (-dx * sin + dy * cos) / p["scale"]

    img = p["background"] + p["bg_gradient"] * (xs - 24.0) / 24.0
    head_r = np.sqrt((u / 16.5) ** 2 + (v / 21.0) ** 2)
    head = _soft((1.0 - head_r) * 16.0)
    skin = p["skin"] * (1.0 + p["light"] * u / 20.0)
    img = img * (1 - head) + skin * head
    dark = p["skin"] * 0.25

    au = np.abs(u)
    # Eyes at (+-7, -4): ellipses whose height follows openness.
    eye_h = 0.5 + 3.0 * p["eye_open"]
    eye_r = np.sqrt(((au - 7.0) / 3.6) ** 2 + ((v + 4.0) / eye_h) ** 2)
    m = _soft((1.0 - eye_r) * 2.5)
    img = img * (1 - m) + dark * m
    # Brows above the eyes; tilt lowers (+) or raises (-) the inner ends.
    brow_v = -9.5 - 3.0 * p["brow_raise"] + p["brow_tilt"] * 0.7 * (7.0 - au)
    on_brow = _soft(np.minimum(au - 2.5, 11.5 - au), 1.0)
    m = _soft(1.4 - np.abs(v - brow_v)) * on_brow
    img = img * (1 - m) + dark * m
    # Nose: a short vertical shade; disgust wrinkles add horizontal lines beside it.
    m = _soft(0.7 - np.abs(u)) * _soft(np.minimum(v + 1.0, 5.0 - v), 1.0) * 0.5
    img = img * (1 - m) + dark * m
    wrinkle = _soft(0.6 - np.abs(np.abs(v - 1.5) - 1.2)) * _soft(np.minimum(au - 1.5, 4.5 - au), 1.0)
    m = wrinkle * p["wrinkle"]
    img = img * (1 - m) + dark * m
    # Mouth: a curve y(u) bent by curvature and smirk, opened into a dark gap.
    half_w = 4.0 + 4.5 * p["mouth_width"]
    t = np.clip(u / half_w, -1.0, 1.0)
    line_v = (11.0 + p["mouth_curve"] * 4.5 * (0.5 - t**2)
              - p["smirk"] * 3.0 * np.clip(t, 0.0, None) ** 2)
    gap = 0.9 + 4.5 * p["mouth_open"] * np.sqrt(np.clip(1.0 - t**2, 0.0, None))
    m = _soft(gap - np.abs(v - line_v)) * _soft(half_w - np.abs(u), 1.0)
    img = img * (1 - m) + dark * m

    img = (img - 128.0) * p["contrast"] + 128.0 + noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _face_parameters(rng: np.random.Generator, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image drawing parameters [n] each: the blended expression plus jitter."""
    n = weights.shape[0]
    expression = weights.astype(np.float32) @ _PROTOTYPES
    expression += rng.normal(0.0, 0.08, expression.shape).astype(np.float32)
    names = ("brow_raise", "brow_tilt", "eye_open", "mouth_curve", "mouth_open",
             "mouth_width", "smirk", "wrinkle")
    face = {name: expression[:, k] for k, name in enumerate(names)}
    for name in ("eye_open", "mouth_open", "mouth_width", "smirk", "wrinkle"):
        face[name] = np.clip(face[name], 0.0, 1.2)

    def jitter(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, n).astype(np.float32)

    face.update(
        cx=24.0 + rng.normal(0.0, 1.5, n).astype(np.float32),
        cy=25.0 + rng.normal(0.0, 1.5, n).astype(np.float32),
        angle=np.deg2rad(rng.normal(0.0, 7.0, n)).astype(np.float32),
        scale=jitter(0.9, 1.12),
        background=jitter(20.0, 235.0),
        bg_gradient=jitter(-40.0, 40.0),
        skin=jitter(120.0, 225.0),
        light=jitter(-0.35, 0.35),
        contrast=jitter(0.7, 1.15),
        noise_sigma=jitter(2.0, 10.0),
    )
    return face


def _mixture_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """float [n, 8]: Dirichlet mixture weights with one dominant emotion per image."""
    dominant = rng.choice(len(EMOTIONS), size=n, p=DOMINANT_PRIOR)
    # Per-image ambiguity: most faces are clear, some are genuinely mixed.
    strength = rng.gamma(2.0, 2.5, n) + 1.0
    alpha = np.full((n, len(EMOTIONS)), 0.25)
    alpha[np.arange(n), dominant] += strength
    return _dirichlet_rows(rng, alpha)


def _dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of ``alpha`` [n, k], vectorised through Gamma variates."""
    gammas = rng.gamma(alpha)
    return gammas / gammas.sum(axis=1, keepdims=True)


def _votes(rng: np.random.Generator, weights: np.ndarray, taggers: int = N_TAGGERS) -> np.ndarray:
    """int32 [n, 10] votes of ``taggers`` taggers per image (each row sums to it);
    unknown / NF with a per-image rate."""
    n = weights.shape[0]
    # Most images are clear (2% noise rate per tagger); ~4% are hard to read (45%).
    noise_rate = np.where(rng.random(n) < 0.04, 0.45, 0.02)
    n_noise = rng.binomial(taggers, noise_rate)
    n_unknown = rng.binomial(n_noise, 0.6)
    emotion_votes = rng.multinomial(taggers - n_noise, weights)
    return np.column_stack([emotion_votes, n_unknown, n_noise - n_unknown]).astype(np.int32)


def is_synthetic_source(path: object) -> bool:
    """True for the source names ``synthetic`` and ``synthetic:<options>``."""
    text = str(path)
    return text == SOURCE_NAME or text.startswith(SOURCE_NAME + ":")


def synthetic_options(source: str) -> dict[str, int]:
    """The generator options of a source name: ``synthetic`` -> {},
    ``synthetic:taggers=3`` -> {"taggers": 3} (``key=value`` pairs joined by commas; keys
    ``SOURCE_OPTIONS``, whole numbers >= 1). ``DataPathError`` naming the source otherwise."""
    if source == SOURCE_NAME:
        return {}
    if not is_synthetic_source(source):
        raise DataPathError(f"{source}: not a synthetic source name ('{SOURCE_NAME}' or "
                            f"'{SOURCE_NAME}:taggers=T')")
    options: dict[str, int] = {}
    for item in source[len(SOURCE_NAME) + 1:].split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if key not in SOURCE_OPTIONS or not sep:
            raise DataPathError(f"{source}: unknown option {item.strip()!r}; valid: "
                                f"{', '.join(k + '=<int>' for k in SOURCE_OPTIONS)}")
        if not value.isdigit() or int(value) < 1:
            raise DataPathError(f"{source}: {key} must be a whole number >= 1, got {value!r}")
        options[key] = int(value)
    return options


def make_synthetic(n: int = 6000, seed: int = 0, taggers: int = N_TAGGERS) -> RawDataset:
    """Generate ``n`` synthetic faces with votes; deterministic for (n, seed, taggers).

    Returns a ``RawDataset``: images uint8 [n, 48, 48], votes int32 [n, 10] (each row sums
    to ``taggers``), usage int8 [n] (~80/10/10 Training/PublicTest/PrivateTest), names
    ``syn0000000.png``..., and ``truth`` (``GroundTruth``: the mixture float32 [n, 8] each
    image's votes were drawn from). Another ``taggers`` than ``N_TAGGERS`` keeps the
    images, mixtures, usage and names of the default set and redraws only the votes (from
    their own stream); its fingerprint names the tagger count.
    """
    if n < 1:
        raise ValueError(f"make_synthetic: n must be >= 1, got {n}")
    if isinstance(taggers, bool) or not isinstance(taggers, (int, np.integer)) or taggers < 1:
        raise ValueError(f"make_synthetic: taggers must be an int >= 1, got {taggers!r}")
    rng = np.random.default_rng(seed)
    weights = _mixture_weights(rng, n)
    # The default set's votes are always drawn: they advance the stream the faces come from.
    votes = _votes(rng, weights)
    if taggers != N_TAGGERS:
        votes = _votes(np.random.default_rng([seed, TAGGER_STREAM, int(taggers)]), weights,
                       int(taggers))
    usage = rng.choice(len(USAGES), size=n, p=USAGE_SHARES).astype(np.int8)
    face = _face_parameters(rng, weights)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        chunk = slice(start, min(start + _CHUNK, n))
        size = chunk.stop - chunk.start
        sigma = face["noise_sigma"][chunk].reshape(size, 1, 1)
        noise = rng.standard_normal((size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32) * sigma
        images[chunk] = _draw_faces({k: v[chunk] for k, v in face.items()}, noise)
    tag = f"synthetic-v{GENERATOR_VERSION}-n{n}-seed{seed}"
    source = SOURCE_NAME
    if taggers != N_TAGGERS:
        tag += f"-taggers{int(taggers)}"
        source += f":taggers={int(taggers)}"
    return RawDataset(
        images=images,
        votes=votes,
        usage=usage,
        names=np.array([f"syn{i:07d}.png" for i in range(n)], dtype=object),
        fingerprint=hashlib.sha256(tag.encode()).hexdigest()[:16],
        report=LoadReport(source_format="synthetic", label_snapshot="synthetic",
                          path=source, rows=n),
        truth=GroundTruth(weights.astype(np.float32), int(taggers)),
    )
