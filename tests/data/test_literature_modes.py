"""Microsoft's FERPlus label modes (fer_bench.data.labels.ferplus_ms) on hand-built vote rows.

Every expected output below is derived by hand from microsoft/FERPlus ``src/ferplus.py``
(``_process_data`` L203-258, the loader's filter L169-176, ``_process_target`` L182-201),
in the comment beside the row. Columns: neutral, happiness, surprise, sadness, anger,
disgust, fear, contempt, unknown, NF. "total" is the vote sum after outlier removal
(every count of 1 becomes 0). Reasons: K kept, N nothing left, R rejected by the mode
(forced unknown), U top vote unknown or NF.
"""

from __future__ import annotations

import hashlib
from functools import partial

import numpy as np
import pytest

from fer_bench.data.clean import clean
from fer_bench.data.labels.ferplus_ms import (
    KEPT,
    MODES,
    NOT_AN_EMOTION,
    NOTHING_LEFT,
    REJECTED,
    majority_labels,
    majority_targets,
    mode_targets,
    official_majority_indices,
    process_votes,
)
from fer_bench.data.labels.treatments import training_targets
from fer_bench.data.splits import make_split
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import DataError
from tests.helpers.cells import add_array_to_digest

K, N, R, U = KEPT, NOTHING_LEFT, REJECTED, NOT_AN_EMOTION
NEU, HAP, SUR, SAD, ANG = 0, 1, 2, 3, 4


def shares(**counts: float) -> tuple[float, ...]:
    """8 emotion shares from {emotion index name: count}, normalised."""
    names = ("neu", "hap", "sur", "sad", "ang", "dis", "fea", "con")
    row = [float(counts.get(name, 0)) for name in names]
    return tuple(v / sum(row) for v in row)


#: (id, votes, {mode: (reason, 8-way target of _process_data + loader, or None)}).
#: maj / prob / ce / multi: majority / probability / crossentropy / multi_target.
GOLDEN = [
    # All single votes: outlier removal leaves nothing (total 0). majority: 0 > 0 false;
    # prob: 0 < 0 false, loop never runs, 0 <= 0 -> unknown; multi: 0 >= 0 keeps zeros,
    # 0 <= 0 -> unknown. Every mode: nothing left.
    ("all-single-votes", [1] * 10, {m: (N, None) for m in MODES}),
    # Emotions all single votes, unknown 5 NF 2 (total 7): no emotion survives. maj: 5 > 3.5
    # -> unknown wins -> dropped by the filter. prob: pass 1 takes unknown (peak 5) first:
    # sum 5 == peak, kept; 5 > 3.5 -> unknown. multi: 0.3*7 = 2.1: unknown 5 only -> unknown.
    ("no-emotion-left", [1, 1, 1, 0, 0, 0, 0, 0, 5, 2], {m: (U, None) for m in MODES}),
    # All unknown (total 10): maj 10 > 5 unknown; prob takes unknown alone (kept, 10 > 5);
    # multi 10 >= 3 -> unknown. Dropped by every mode at the filter (top is unknown).
    ("all-unknown", [0] * 8 + [10, 0], {m: (U, None) for m in MODES}),
    ("mostly-NF", [0] * 8 + [2, 8], {m: (U, None) for m in MODES}),
    # neutral 6, unknown 4 (total 10; the study's cleaning drops it: unknown + NF = 4 > 3).
    # maj 6 > 5 -> neutral. prob: pass 1 takes 6 (6 < 7.5), pass 2 peak 4 is unknown:
    # taken, then left out again (6 + 4 > 4), count 1; 6 > 5 -> neutral.
    # multi: 0.3*10 = 3: neutral 6 and unknown 4 kept (10 > 5); top neutral -> neutral only.
    ("unknown-4-emotion-6", [6, 0, 0, 0, 0, 0, 0, 0, 4, 0],
     {m: (K, shares(neu=1)) for m in MODES}),
    # Tie at the majority threshold: neutral 5, happiness 5 (total 10). maj: 5 > 5 false ->
    # rejected. prob: pass 1 takes both (covered 10), 10 > 5, count 2 -> 1/2 each.
    # multi: both >= 3 -> 1/2 each.
    ("tie-at-majority-threshold", [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
     {"majority": (R, None), "probability": (K, shares(neu=1, hap=1)),
      "crossentropy": (K, shares(neu=1, hap=1)), "multi_target": (K, shares(neu=1, hap=1))}),
    # Exactly half without a tie: 5 of 10 is not a majority (strict >).
    ("half-is-not-majority", [5, 3, 2, 0, 0, 0, 0, 0, 0, 0],
     {"majority": (R, None), "probability": (K, shares(neu=5, hap=3)),
      "crossentropy": (K, shares(neu=5, hap=3)), "multi_target": (K, shares(neu=5, hap=3))}),
    # Outlier removal makes a majority: 5 + five single votes -> total 5, 5 > 2.5.
    ("outliers-make-a-majority", [5, 1, 1, 1, 1, 1, 0, 0, 0, 0],
     {m: (K, shares(neu=1)) for m in MODES}),
    # fer0000000: sadness 1 dropped (total 9). maj 4 > 4.5 false. prob: 4 (< 6.75), then
    # 3 (covered 7 >= 6.75): 4/7, 3/7. multi: 0.3*9 = 2.7: 4 and 3 kept (7 > 4.5).
    ("fer0000000", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],
     {"majority": (R, None), "probability": (K, shares(neu=4, ang=3)),
      "crossentropy": (K, shares(neu=4, ang=3)), "multi_target": (K, shares(neu=4, ang=3))}),
    # Three-way tie taken in one pass (count 3, covered 9 of 9).
    ("three-way-tie", [3, 3, 3, 1, 0, 0, 0, 0, 0, 0],
     {"majority": (R, None), "probability": (K, shares(neu=1, hap=1, sur=1)),
      "crossentropy": (K, shares(neu=1, hap=1, sur=1)),
      "multi_target": (K, shares(neu=1, hap=1, sur=1))}),
    # Too many classes: 4 (< 7.5), then a pass takes three tied 2s: count 4 > 3 -> rejected.
    # multi: 0.3*10 = 3: only neutral 4 -> 4 <= 5 rejected.
    ("ties-push-past-three", [4, 2, 2, 2, 0, 0, 0, 0, 0, 0], {m: (R, None) for m in MODES}),
    # 3, 3 (covered 6 < 7.5, count 2), then 2, 2 in one pass: count 4 -> rejected.
    # multi: 3 and 3 >= 3 (6 > 5) -> 1/2 each.
    ("two-ties-then-two", [3, 3, 2, 2, 0, 0, 0, 0, 0, 0],
     {"majority": (R, None), "probability": (R, None), "crossentropy": (R, None),
      "multi_target": (K, shares(neu=1, hap=1))}),
    # NF ties the current peak after emotions: 4 (< 7.5); pass 2 at peak 2 takes happiness,
    # surprise, then NF: taken, left out again (sum 10 > 2), count back to 3, search ends.
    # 8 > 5 -> 4/8, 2/8, 2/8. multi: only 4 >= 3 -> 4 <= 5 rejected.
    ("NF-ties-the-peak", [4, 2, 2, 0, 0, 0, 0, 0, 0, 2],
     {"majority": (R, None), "probability": (K, shares(neu=2, hap=1, sur=1)),
      "crossentropy": (K, shares(neu=2, hap=1, sur=1)), "multi_target": (R, None)}),
    # Unknown in the first pass after three tied emotions: count 4 -> unknown left out,
    # count 3; 6 > 5 kept, 1/3 each. multi: nothing >= 3 -> rejected.
    ("unknown-in-a-tie-of-four", [2, 2, 2, 0, 0, 0, 0, 0, 2, 2],
     {"majority": (R, None), "probability": (K, shares(neu=1, hap=1, sur=1)),
      "crossentropy": (K, shares(neu=1, hap=1, sur=1)), "multi_target": (R, None)}),
    # Coverage reached by the first class: 8 >= 7.5 -> neutral alone in every mode.
    ("one-class-covers", [8, 2, 0, 0, 0, 0, 0, 0, 0, 0], {m: (K, shares(neu=1)) for m in MODES}),
    # Emotion and unknown tied at the top (total 6): prob takes neutral, then unknown (left
    # out: 6 > 3): 3 <= 3 -> rejected (tie at the 50% threshold). maj: 3 > 3 false.
    # multi: 0.3*6 = 1.8: both kept (6 > 3); argmax takes the first maximum, neutral.
    ("emotion-ties-unknown", [3, 0, 0, 0, 0, 0, 0, 0, 3, 0],
     {"majority": (R, None), "probability": (R, None), "crossentropy": (R, None),
      "multi_target": (K, shares(neu=1))}),
    # Unknown on top alone: maj 6 > 5 unknown; prob takes unknown first (kept: sum == peak),
    # 6 > 5 -> unknown; multi 0.3*10 = 3: unknown 6 only -> unknown. All dropped (U).
    ("unknown-on-top", [2, 0, 0, 0, 0, 0, 0, 0, 6, 2], {m: (U, None) for m in MODES}),
    # total 11: prob 5 (< 8.25), pass 2 at 3: happiness, then unknown (left out): 8 > 5.5.
    # multi: 0.3*11 = 3.3: only 5 -> 5 <= 5.5 rejected. maj: 5 > 5.5 false.
    ("unknown-after-emotions", [5, 3, 0, 0, 0, 0, 0, 0, 3, 0],
     {"majority": (R, None), "probability": (K, shares(neu=5, hap=3)),
      "crossentropy": (K, shares(neu=5, hap=3)), "multi_target": (R, None)}),
    # Unknown 4 tops emotion 3 (total 10): prob takes unknown first and keeps it (sum ==
    # peak), 4 <= 5 -> rejected; multi keeps 3, 4, 3 (all >= 3): top unknown -> U.
    ("unknown-tops-multi", [3, 0, 0, 0, 0, 0, 0, 0, 4, 3],
     {"majority": (R, None), "probability": (R, None), "crossentropy": (R, None),
      "multi_target": (U, None)}),
    # multi with unknown in its mask but an emotion on top: 5, unknown 3 kept (>= 3), NF 2
    # not; 8 > 5; the 8-way target drops unknown -> neutral only.
    ("multi-drops-unknown-share", [5, 0, 0, 0, 0, 0, 0, 0, 3, 2],
     {"majority": (R, None), "probability": (R, None), "crossentropy": (R, None),
      "multi_target": (K, shares(neu=1))}),
    # Five tied emotions: maj 2 > 5 false; prob count 5 > 3; multi nothing >= 3.
    # An image every mode discards (as a rejection, not for unknown/NF).
    ("every-mode-discards", [2, 2, 2, 2, 2, 0, 0, 0, 0, 0], {m: (R, None) for m in MODES}),
]


@pytest.mark.parametrize(("votes", "expected"), [(v, e) for _, v, e in GOLDEN],
                         ids=[name for name, _, _ in GOLDEN])
@pytest.mark.parametrize("mode", MODES)
def test_golden_vote_rows(votes, expected, mode):
    reason, target = expected[mode]
    result = process_votes(votes, mode)
    assert result.reason == reason
    assert result.kept == (reason == K)
    assert result.forced == (reason in (N, R))
    assert abs(sum(result.dist) - 1.0) < 1e-12               # _process_data normalises (L258)
    if target is None:
        assert result.target is None
    else:
        assert result.target == pytest.approx(target, abs=1e-12)


def test_probability_and_crossentropy_process_alike():
    for _, votes, _ in GOLDEN:
        assert process_votes(votes, "probability") == process_votes(votes, "crossentropy")


def test_training_rows_per_mode():
    votes = np.array([[4, 0, 0, 1, 3, 2, 0, 0, 0, 0],       # fer0000000
                      [6, 0, 0, 0, 0, 0, 0, 0, 4, 0],
                      [0] * 8 + [10, 0]])
    kept, rows, reasons = mode_targets(votes, "majority")
    assert kept.tolist() == [False, True, False] and reasons.tolist() == [R, K, U]
    assert rows[1].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    kept, rows, _ = mode_targets(votes, "crossentropy")
    assert kept.tolist() == [True, True, False]
    assert rows[0] == pytest.approx([4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])
    # multi_target: the mask of positive shares (L197-199) normalised: 1/2, 1/2
    kept, rows, _ = mode_targets(votes, "multi_target")
    assert rows[0].tolist() == [0.5, 0, 0, 0, 0.5, 0, 0, 0] and rows[2].tolist() == [0] * 8
    assert majority_labels(votes).tolist() == [-1, NEU, -1]


@pytest.mark.parametrize("votes", [[1, 2, 3], [0] * 11, [5, -1, 0, 0, 0, 0, 0, 0, 0, 6],
                                   [float("nan")] + [0] * 9])
def test_bad_vote_rows_are_data_errors(votes):
    with pytest.raises(DataError, match="vote row"):
        process_votes(votes, "majority")


def test_bad_mode_and_shape():
    with pytest.raises(ValueError, match="unknown FERPlus mode 'multitarget'"):
        process_votes([0] * 10, "multitarget")
    with pytest.raises(DataError, match=r"shape \[N, 10\]"):
        mode_targets(np.zeros((3, 8)), "majority")


# ------------------------------------------------------------------ golden digest
#: sha256 over every literature output on make_synthetic(600, seed=0): the ferplus-ms
#: fingerprint, the official-majority split, each mode's kept indices and targets, and the
#: majority scoring targets. Changes only with the protocol (bump PROTOCOL_VERSION then).
LITERATURE_DIGEST = "f6e39fad74b38a38f0d22e0dcf264f2a8192e729a1201d5d7a790278a94f6636"


def literature_outputs() -> str:
    digest = hashlib.sha256()

    add = partial(add_array_to_digest, digest)

    data = clean(make_synthetic(600, seed=0), "ferplus-ms")
    digest.update(data.fingerprint.encode())
    add(data.votes)
    split = make_split(data, "official-majority", 0)
    for part in (split.train, split.val, split.test):
        add(part)
    for variant in ("ms-majority", "ms-probability", "ms-crossentropy", "ms-multitarget"):
        kept, targets = training_targets(data, variant, split.train, 0)
        add(kept)
        add(targets)
    add(majority_targets(data, split.val))
    add(majority_targets(data, split.test))
    return digest.hexdigest()


def test_literature_outputs_golden_digest():
    assert literature_outputs() == LITERATURE_DIGEST


def test_official_majority_keeps_only_majority_images():
    data = clean(make_synthetic(600, seed=0), "ferplus-ms")
    train, val, test = official_majority_indices(data, 0, 0.1)
    assert (majority_labels(data.votes[val]) >= 0).all()
    assert (majority_labels(data.votes[test]) >= 0).all()
    assert set(data.usage[train]) == {0} and set(data.usage[val]) == {1}
    assert set(data.usage[test]) == {2}
