"""Ground truth you can check (beyond the study): does N-hot training recover the hidden
distribution the taggers sample from, or only add their noise?

On real faces nobody knows an image's true emotion mixture: the 10 FERPlus taggers' votes
are all there is. The embedded synthetic set knows it: each face shows a blend of emotions
drawn from a Dirichlet mixture, and its simulated taggers vote from that mixture
(``fer_bench/data/synthetic.py``). This module trains the same faces with votes of 3, 10
and 30 taggers (``synthetic:taggers=T``: only the votes differ; 10 is the default set)
on 1-, 2-, 3- and 8-hot targets, and every cell records, beside the usual metrics, the
mean KL divergence from the TRUE mixture to its prediction and its accuracy against the
true top emotion (``CellRecord.kl_true_mean`` / ``acc_true_top``). The leaderboard's
"recovery" section sets them side by side per tagger count and N, with its reading: when
N-hot targets bring the prediction closer to the hidden distribution than 1-hot, and
when they only add noise::

    pytest benchmarks/test_recovery.py --fer-profile smoke --benchmark-json recovery.json
    fer-bench leaderboard recovery.json --out leaderboard/

Always synthetic (the ground truth exists nowhere else), always ``small_cnn`` unless
``--fer-models`` says otherwise, ordinary split (with 3 taggers no image has more than 3
voted emotions, so there is no complex test set). The seeds are the run's (default 0,
kept cheap: under ``--fer-profile smoke`` the 12 cells took 6.3 minutes on this project's
2-core CPU while a training grid ran beside it, load average about 4); with one seed the
reading gives the direction of each contrast only, ``--fer-seeds 0-2`` adds paired 95%
intervals. The 10-tagger cells are the N-hot grid's own cells on the default set (same identity), so a
run of all of ``benchmarks/`` trains them once.
"""

from __future__ import annotations

import pytest

#: Simulated taggers per image; 10 is the default synthetic set (FERPlus has 10).
TAGGERS = (3, 10, 30)

pytestmark = [
    pytest.mark.fer_experiment(
        "recovery", title="Recovery of the hidden distribution (synthetic ground truth): "
                          "3, 10, 30 taggers x 1/2/3/8-hot"),
    pytest.mark.fer_axes(models=["small_cnn"], nhot=[1, 2, 3, 8], split=["ordinary"]),
]


@pytest.mark.parametrize("fer_data", [f"synthetic:taggers={t}" for t in TAGGERS],
                         ids=[f"taggers={t}" for t in TAGGERS])
def test_recovery(fer_cell, fer_data, benchmark):
    """Train one cell on the votes of T taggers; record how close it gets to the truth."""
    record = fer_cell.run(benchmark)
    assert record.status == "ok" and record.dataset_label == "synthetic"
    assert record.synthetic_taggers == int(fer_data.rsplit("=", 1)[1])
    assert record.kl_true_mean is not None and record.kl_true_mean >= 0.0
    assert record.acc_true_top is not None and 0.0 <= record.acc_true_top <= 1.0
