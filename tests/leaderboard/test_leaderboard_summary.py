"""The 8-hot vs 1-hot confidence interval column and the computed summary at the top of the
leaderboard page (issue 14: "states the measured N-hot effect with its uncertainty on both
splits"). Every expected number is computed here by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fer_bench.leaderboard.markdown import render_markdown
from fer_bench.leaderboard.rows import summarize
from fer_bench.leaderboard.study_claims import ORDINARY_GAIN, verdict
from fer_bench.leaderboard.summary import TITLE, summary_lines
from fer_bench.leaderboard.table import build_tables
from tests.helpers.leaderboard_support import make_record, single_seed_mcnemar_pair


def _grid(accs: dict[int, list[float]], split: str = "ordinary", **kwargs):
    return [make_record(nhot=n, seed=seed, acc=acc, split=split, **kwargs)
            for n, values in accs.items() for seed, acc in enumerate(values)]


def _hand_interval(a, b, confidence=0.95):
    diff = np.subtract(a, b)
    half = scipy_stats.t.ppf((1 + confidence) / 2, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    return diff.mean() - half, diff.mean() + half


def test_eight_vs_one_interval_is_the_paired_t_interval():
    accs = {1: [0.60, 0.66, 0.62], 8: [0.66, 0.71, 0.65]}
    row = summarize(_grid(accs))["ordinary"][0]
    low, high = _hand_interval(accs[8], accs[1])
    assert row.eight_vs_one.ci == pytest.approx((low, high), rel=1e-12)
    frame = build_tables(_grid(accs))["ordinary"]
    assert frame.loc["small_cnn", "95% CI (8 vs 1, pts)"] == f"[{100 * low:+.2f}, {100 * high:+.2f}]"


def test_best_n_interval_is_bonferroni_matched():
    accs = {1: [0.60, 0.66, 0.62], 3: [0.64, 0.67, 0.66], 8: [0.66, 0.71, 0.66]}
    row = summarize(_grid(accs))["ordinary"][0]
    assert row.best_n == 8 and row.gain.comparisons == 2
    assert row.gain.ci == pytest.approx(_hand_interval(accs[8], accs[1], 1 - 0.05 / 2), rel=1e-12)
    assert row.eight_vs_one.ci == pytest.approx(_hand_interval(accs[8], accs[1]), rel=1e-12)


def test_no_interval_below_three_seeds_or_with_constant_differences():
    one_seed = summarize(_grid({1: [0.6], 8: [0.7]}))["ordinary"][0]
    assert one_seed.eight_vs_one.ci is None
    two_seeds = summarize(_grid({1: [0.60, 0.70], 8: [0.66, 0.71]}))["ordinary"][0]
    assert two_seeds.eight_vs_one.ci is None and two_seeds.eight_vs_one.gain == pytest.approx(0.035)
    assert verdict(two_seeds.eight_vs_one).startswith("no interval (2 paired seeds; 3 are needed)")
    constant = summarize(_grid({1: [0.60, 0.70, 0.50], 8: [0.625, 0.725, 0.525]}))["ordinary"][0]
    assert constant.eight_vs_one.ci is None
    assert verdict(constant.eight_vs_one) == "every paired difference is the same: no interval"
    assert build_tables(_grid({1: [0.6], 8: [0.7]}))["ordinary"].loc["small_cnn", "95% CI (8 vs 1, pts)"] == "—"


@pytest.mark.parametrize(("ordinary", "expected"), [
    ({1: [0.60, 0.66, 0.62], 8: [0.63, 0.70, 0.65]},      # +3.3 [+1.9, +4.8]
     "gain confirmed (the 95% interval excludes 0); consistent with the study's claim (+2 to +4 points)"),
    ({1: [0.60, 0.66, 0.62], 8: [0.605, 0.666, 0.627]},   # +0.6 [+0.35, +0.85]
     "gain confirmed (the 95% interval excludes 0); rules out the study's claim (+2 to +4 points)"),
    ({1: [0.60, 0.66, 0.62], 8: [0.58, 0.63, 0.60]},
     "N-hot worse, confirmed (the 95% interval lies below 0); rules out the study's claim"),
    ({1: [0.60, 0.66, 0.62], 8: [0.67, 0.74, 0.69]},      # +7.3 [+5.9, +8.8]
     "gain confirmed (the 95% interval excludes 0); above the study's claimed band (+2 to +4 points)"),
    ({1: [0.60, 0.66, 0.62], 8: [0.62, 0.65, 0.63]},      # +0.7 [-3.1, +4.5]
     "no gain confirmed (the 95% interval includes 0); consistent with the study's claim"),
    ({1: [0.60, 0.66, 0.62], 8: [0.601, 0.659, 0.621]},
     "no gain confirmed (the 95% interval includes 0); rules out the study's claim (+2 to +4 points)"),
])
def test_summary_states_the_effect_per_split_in_plain_words(ordinary, expected):
    complex_ = {1: [0.50, 0.52, 0.49], 8: [0.51, 0.52, 0.50]}
    records = _grid(ordinary) + _grid(complex_, split="complex")
    lines = summary_lines(records)
    assert lines[0] == f"## {TITLE}"
    bullets = [line for line in lines if line.startswith("- ")]
    assert len(bullets) == 2 and "ordinary split" in bullets[0] and "complex split" in bullets[1]
    assert "+2 to +4 points, depending on the model (report 4.4" in bullets[0]
    ordinary_block = "\n".join(lines[lines.index(bullets[0]):lines.index(bullets[1])])
    tie_aware = next(line for line in lines if line.startswith("  - tie-aware:"))
    assert tie_aware in ordinary_block
    gain = 100 * np.mean(np.subtract(ordinary[8], ordinary[1]))
    low, high = (100 * x for x in _hand_interval(ordinary[8], ordinary[1]))
    p = scipy_stats.ttest_rel(ordinary[8], ordinary[1]).pvalue
    assert f"**{gain:+.2f} points**" in tie_aware
    assert f"95% CI [{low:+.2f}, {high:+.2f}]" in tie_aware
    assert f"p = {p:.3g} (paired t, n=3)" in tie_aware
    assert f"1-hot {100 * np.mean(ordinary[1]):.2f}%" in tie_aware
    assert f"*Verdict: {expected}" in tie_aware
    assert "  - top-1: not recorded in these cells" in ordinary_block   # no top-1 in these records
    page = render_markdown(records, [])
    assert page.index(TITLE) < page.index("## nhot")          # the answer comes first


def test_summary_needs_both_one_and_eight_hot():
    assert summary_lines(_grid({1: [0.6, 0.7, 0.65]})) == []
    assert summary_lines(_grid({1: [0.6], 8: [0.7]}, experiment="losses")) == []   # other sections
    single = summary_lines(_grid({1: [0.6], 8: [0.7]}))
    assert any("not an answer yet" in line for line in single)


def test_verdict_without_interval_says_so():
    row = summarize(_grid({1: [0.6], 8: [0.7]}))["ordinary"][0]
    assert verdict(row.eight_vs_one, ORDINARY_GAIN) == (
        "no interval (1 paired seeds; 3 are needed): not an answer yet")


def test_single_seed_line_names_mcnemar_not_t():
    records, discordant = single_seed_mcnemar_pair()     # all in 8-hot's favour: exact test
    expected = scipy_stats.binomtest(discordant, discordant, 0.5).pvalue
    line = next(line for line in summary_lines(records) if line.startswith("  - tie-aware:"))
    assert f"p = {expected:.3g} (McNemar exact (single run: training variance not included))" in line
    assert "paired t" not in line and "not an answer yet" in line
