"""N-hot label reduction of training targets (SPEC "Data", report 3.3.3, Fig. 18).

For every row with more than N positive shares, the 8 shares are ordered descending
(ties in random order), all but the top N are zeroed and the row is renormalised to sum 1.
Rows with at most N positive shares are returned unchanged; N = 8 is the identity.
"""

from __future__ import annotations

import numpy as np

from fer_bench.data.schema import EMOTIONS

_N_EMOTIONS = len(EMOTIONS)
#: Second entropy word of the tie-breaking stream, ``default_rng([seed, NHOT_STREAM])``:
#: independent of the test-set draw (``default_rng(seed)``) and the validation stream (1).
NHOT_STREAM = 2


def reduce_to_nhot(dist: np.ndarray, n: int, seed: int) -> np.ndarray:
    """N-hot version of ``dist`` (float [M, 8], rows summing to 1); a new array, same dtype.

    Tie-breaking: one uniform random key per entry from
    ``default_rng([seed, NHOT_STREAM]).random((M, 8))``
    (drawn for every row, so row i's draw depends only on seed and M); within equal shares
    the entry with the smaller key ranks first. Same seed -> same output.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= _N_EMOTIONS:
        raise ValueError(f"N-hot: n must be an int in 1..{_N_EMOTIONS}, got {n!r}")
    dist = np.asarray(dist)
    if dist.ndim != 2 or dist.shape[1] != _N_EMOTIONS:
        raise ValueError(f"N-hot: dist must have shape [M, {_N_EMOTIONS}], got {dist.shape}")
    if not np.issubdtype(dist.dtype, np.floating):
        raise ValueError(f"N-hot: dist must be a float array, got dtype {dist.dtype}")
    if not np.isfinite(dist).all() or (dist < 0).any():
        raise ValueError("N-hot: dist must be finite and non-negative")

    result = dist.copy()
    if n == _N_EMOTIONS:
        return result
    tie_keys = np.random.default_rng([seed, NHOT_STREAM]).random(dist.shape)
    rows = np.flatnonzero((dist > 0).sum(axis=1) > n)
    if rows.size == 0:
        return result
    shares = dist[rows]
    # lexsort: the last key is primary -> descending share, then ascending random key.
    order = np.lexsort((tie_keys[rows], -shares), axis=1)
    dropped = order[:, n:]
    reduced = shares.copy()
    np.put_along_axis(reduced, dropped, 0.0, axis=1)
    reduced /= reduced.sum(axis=1, keepdims=True)
    result[rows] = reduced
    return result
