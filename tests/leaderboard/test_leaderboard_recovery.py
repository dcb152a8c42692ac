"""The leaderboard's recovery section (issue 22, part 4): per tagger count and N, KL to the
hidden distribution and accuracy against the true top emotion, and the reading."""

from __future__ import annotations

import pytest

from fer_bench.leaderboard.recovery import (
    BETTER,
    NOISE,
    READING_COLUMN,
    SECTION,
    UNCLEAR,
    acc_column,
    contrasts,
    kl_column,
    recovery_notes,
)
from fer_bench.leaderboard.rows import summarize
from fer_bench.leaderboard.table import build_tables
from tests.helpers.leaderboard_support import make_record

#: taggers -> N -> KL to the truth per seed 0, 1, 2. 30 taggers: 8-hot closer every seed;
#: 3 taggers: 3-hot further every seed (8-hot trained on 3-hot's targets); 10: mixed.
KL = {
    30: {1: (0.90, 0.93, 0.91), 3: (0.85, 0.88, 0.86), 8: (0.80, 0.84, 0.81)},
    3: {1: (0.80, 0.82, 0.81), 3: (0.85, 0.88, 0.85), 8: (0.85, 0.88, 0.85)},
    10: {1: (0.85, 0.86, 0.84), 3: (0.84, 0.89, 0.83), 8: (0.83, 0.89, 0.84)},
}


def recovery_records(seeds=(0, 1, 2), experiment=SECTION):
    records = []
    for taggers, by_n in KL.items():
        for n, values in by_n.items():
            for seed in seeds:
                # 3 taggers: no image has more than 3 voted emotions, so 8-hot = 3-hot
                targets = f"t{taggers}-n{3 if taggers == 3 and n == 8 else n}-s{seed}"
                records.append(make_record(
                    nhot=n, seed=seed, acc=0.6, experiment=experiment,
                    dataset=f"synth-taggers{taggers}", synthetic_taggers=taggers,
                    kl_true_mean=values[seed], acc_true_top=0.55 + 0.01 * n + 0.001 * taggers,
                    train_targets_sha256=targets))
    return records


def test_columns_per_n_and_rows_per_tagger_count():
    frame = build_tables(recovery_records(), experiment=SECTION)["ordinary"]
    labels = {taggers: next(label for label in frame.index if f", {taggers} taggers" in label)
              for taggers in KL}
    assert len(set(labels.values())) == 3
    row = frame.loc[labels[30]]
    assert row["taggers"] == "30"
    assert row[kl_column(1)].startswith("0.913 ± ")           # mean of 0.90, 0.93, 0.91
    assert row[kl_column(8)].startswith("0.817 ± ")
    assert row[acc_column(8)].startswith("66.00")              # 0.55 + 0.08 + 0.03, percent
    assert kl_column(2) not in frame.columns                   # no 2-hot cells here
    assert "8-hot = 3-hot (same targets)" in frame.loc[labels[3]][READING_COLUMN]


def test_verdicts_from_paired_intervals():
    rows = {r.identity["dataset"]: r for r in summarize(recovery_records(), experiment=SECTION)["ordinary"]}
    verdicts = {taggers: {c.n: (c.verdict, c.same_as) for c in contrasts(rows[f"synth-taggers{taggers}"])}
                for taggers in KL}
    assert verdicts[30] == {3: (BETTER, None), 8: (BETTER, None)}
    assert verdicts[3] == {3: (NOISE, None), 8: (NOISE, 3)}
    assert verdicts[10] == {3: (UNCLEAR, None), 8: (UNCLEAR, None)}
    eight = next(c for c in contrasts(rows["synth-taggers30"]) if c.n == 8)
    assert eight.kl == pytest.approx(-0.0967, abs=1e-4) and eight.kl_ci[1] < 0


def test_the_reading_is_a_note_of_the_recovery_section_only():
    frame = build_tables(recovery_records(), experiment=SECTION)["ordinary"]
    (note,) = [n for n in frame.attrs["notes"] if n.startswith("Reading")]
    assert "better than 1-hot with 30 taggers (N = 3, 8)" in note
    assert "only adds noise with 3 taggers (N = 3)" in note
    assert "unclear (interval holds 0) with 10 taggers (N = 3, 8)" in note
    assert "8-hot minus 1-hot in KL by tagger count: +0.050 (3), +0.003 (10), -0.097 (30)" in note
    nhot = build_tables(recovery_records(experiment="nhot"), experiment="nhot")["ordinary"]
    assert not any(n.startswith("Reading") for n in nhot.attrs["notes"])
    assert kl_column(1) not in nhot.columns and READING_COLUMN not in nhot.columns


def test_one_seed_reads_the_direction_only():
    rows = summarize(recovery_records(seeds=(0,)), experiment=SECTION)["ordinary"]
    (note,) = recovery_notes(rows)
    assert "With 1 seed only the direction is read" in note
    # seed 0 alone: 10 taggers' contrasts are read by their sign (-0.01, -0.02)
    assert "better than 1-hot with 10 taggers (N = 3, 8); 30 taggers (N = 3, 8);" in note
    assert "unclear" not in note
    row = next(r for r in rows if r.identity["dataset"] == "synth-taggers3")
    assert all(c.kl_ci is None for c in contrasts(row))
