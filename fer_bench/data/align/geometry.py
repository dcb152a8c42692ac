"""The geometry of alignment: eye centres, inclination, the similarity transform, the warp,
the landmark checks. Pure numpy, no dlib.

Coordinates are pixels (x, y) with y down and pixel centres at integer coordinates; the
frame is the 48x48 image (``IMAGE_SIZE``). Angles are degrees. Landmarks follow dlib's
68-point layout: points 36-41 are the eye on the image's left (the subject's right eye),
42-47 the eye on the image's right.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fer_bench.data.schema import IMAGE_SIZE

if TYPE_CHECKING:
    from fer_bench.data.align.settings import AlignSettings

#: ``AlignResult.status`` codes.
STATUS_ALIGNED, STATUS_NO_FACE, STATUS_OUTSIDE, STATUS_DEGENERATE = 0, 1, 2, 3
STATUS_NAMES: tuple[str, ...] = ("aligned", "no_face", "landmarks_outside", "degenerate")
N_LANDMARKS = 68
LEFT_EYE_POINTS = slice(36, 42)   # the eye on the image's left (the subject's right eye)
RIGHT_EYE_POINTS = slice(42, 48)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking
    points ``src`` [K, 2] onto ``dst`` [K, 2] (Umeyama 1991); exact for K = 2.
    Returns the 2x3 matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two [K>=2, 2] point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points coincide")
    cov = d0.T @ s0 / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sigma * sign).sum() / var_s
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def eye_angle(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Inclination of the eye line in degrees: ``atan2(dy, dx)`` from the image-left to the
    image-right eye centre (y down), so positive = right eye lower = face turned clockwise
    on screen. Works on [..., 2] arrays."""
    d = np.asarray(right, dtype=np.float64) - np.asarray(left, dtype=np.float64)
    return np.degrees(np.arctan2(d[..., 1], d[..., 0]))


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """[..., 2, 2]: (image-left eye, image-right eye) x (x, y) from 68 landmarks [..., 68, 2]."""
    return np.stack([landmarks[..., LEFT_EYE_POINTS, :].mean(-2),
                     landmarks[..., RIGHT_EYE_POINTS, :].mean(-2)], axis=-2)


def warp_similarity(images: np.ndarray, matrices: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Warp a batch of grayscale images with one 2x3 matrix each (source -> output pixel
    coordinates, pixel centres at integers), vectorised over the batch.

    images uint8 [B, H, W]; matrices [B, 2, 3]; returns uint8 [B, size, size]. Each output
    pixel is bilinearly sampled at its inverse image; samples beyond the source are clamped
    to its border (edge replication).
    """
    images = np.asarray(images)
    matrices = np.asarray(matrices, dtype=np.float64)
    batch, height, width = images.shape
    if matrices.shape != (batch, 2, 3):
        raise ValueError(f"matrices must be [{batch}, 2, 3], got {matrices.shape}")
    if batch == 0:
        return np.empty((0, size, size), dtype=np.uint8)
    inverse = np.linalg.inv(matrices[:, :, :2])                       # [B, 2, 2]
    ys, xs = np.mgrid[0:size, 0:size]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float64)   # [P, 2]
    src = np.einsum("bij,bpj->bpi", inverse, grid[None] - matrices[:, None, :, 2])
    x = np.clip(src[..., 0], 0, width - 1)
    y = np.clip(src[..., 1], 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2)
    wx, wy = x - x0, y - y0
    flat = images.reshape(batch, -1).astype(np.float32)
    base = y0 * width + x0
    rows = np.arange(batch)[:, None]
    top = (1 - wx) * flat[rows, base] + wx * flat[rows, base + 1]
    bottom = (1 - wx) * flat[rows, base + width] + wx * flat[rows, base + width + 1]
    out = (1 - wy) * top + wy * bottom
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(batch, size, size)


def landmark_status(points: np.ndarray, settings: AlignSettings, size: int = IMAGE_SIZE) -> int:
    """``STATUS_ALIGNED`` if 68 landmarks [68, 2] (48-px frame) pass the checks, else why not:
    an eye point outside the frame or any point more than ``max_outside_px`` outside it
    (``STATUS_OUTSIDE``), eyes closer than ``min_eye_distance`` (``STATUS_DEGENERATE``)."""
    if not np.isfinite(points).all():
        return STATUS_OUTSIDE
    hi = size - 1
    eyes = points[36:48]
    if (eyes < 0).any() or (eyes > hi).any():
        return STATUS_OUTSIDE
    margin = settings.max_outside_px
    if (points < -margin).any() or (points > hi + margin).any():
        return STATUS_OUTSIDE
    left, right = eye_centres(points)
    if np.hypot(*(right - left)) < settings.min_eye_distance:
        return STATUS_DEGENERATE
    return STATUS_ALIGNED
