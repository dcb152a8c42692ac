"""The time-to-accuracy ladder (fer_bench.leaderboard.speedrun) on hand-built records, and
the speedrun table in the terminal and markdown leaderboards."""

from __future__ import annotations

import statistics

import pytest
from rich.console import Console

from fer_bench.identity.config import TrainConfig
from fer_bench.leaderboard.markdown import render_markdown
from fer_bench.leaderboard.speedrun import (
    LADDER,
    NOT_REACHED,
    images_per_epoch,
    rung_column,
    seeds_frame,
    speedrun_frame,
    time_to_accuracy,
)
from fer_bench.leaderboard.table import print_terminal_tables
from tests.helpers.leaderboard_support import make_record

IMAGES = 25_600          # trained per epoch: 100 full batches of 256
FLOPS = 175_000_000      # per training image


def speedrun_record(val, test, times, *, model="fast_resnet", seed=0, flops=FLOPS,
                    experiment="speedrun", **fields):
    return make_record(model, nhot=8, seed=seed, acc=test[-1], experiment=experiment,
                       recipe=TrainConfig(epochs=len(val)), test_acc=list(test),
                       val_acc=list(val), epoch_times_s=list(times),
                       train_images_per_s=IMAGES / statistics.median(times),
                       train_flops_per_image=flops, **fields)


def test_images_per_epoch_is_the_runners_own_figure():
    record = speedrun_record([0.5, 0.6], [0.5, 0.6], [10.0, 13.0])
    assert images_per_epoch(record) == IMAGES
    assert images_per_epoch(speedrun_record([0.5], [0.5], [7.3])) == IMAGES


def test_each_rung_is_the_first_epoch_reaching_it():
    val = [0.55, 0.65, 0.72, 0.71, 0.80, 0.79]
    test = [0.50, 0.62, 0.70, 0.73, 0.78, 0.81]
    times = [10.0, 11.0, 12.0, 10.0, 11.0, 12.0]
    rungs = time_to_accuracy(speedrun_record(val, test, times))
    assert [r.target for r in rungs] == list(LADDER)
    sixty, seventy, seventy_five, eighty, eighty_five = rungs
    assert (sixty.epoch, sixty.seconds, sixty.test_acc, sixty.val_acc) == (2, 21.0, 0.62, 0.65)
    assert sixty.flops == pytest.approx(2 * IMAGES * FLOPS)
    assert (seventy.epoch, seventy.seconds, seventy.test_acc) == (3, 33.0, 0.70)
    # 75% is first reached at epoch 5 (epoch 4's 0.71 does not count; the dip after 3 neither)
    assert (seventy_five.epoch, seventy_five.seconds, seventy_five.test_acc) == (5, 54.0, 0.78)
    assert eighty.epoch == 5 and eighty.flops == pytest.approx(5 * IMAGES * FLOPS)
    assert not eighty_five.reached and eighty_five.seconds is None and eighty_five.flops is None


def test_the_test_set_never_picks_the_epoch():
    """Epoch 2 has the better test accuracy, but the rung is read where validation reaches it."""
    rungs = time_to_accuracy(speedrun_record([0.61, 0.60], [0.60, 0.90], [5.0, 5.0]), ladder=[0.6])
    assert rungs[0].epoch == 1 and rungs[0].test_acc == 0.60


def test_exact_rung_values_and_float_rounding_count_as_reached():
    rungs = time_to_accuracy(speedrun_record([0.7, 0.75 - 1e-12], [0.7, 0.75], [1.0, 1.0]),
                             ladder=[0.7, 0.75])
    assert [r.epoch for r in rungs] == [1, 2]


def test_missing_flops_leave_time_and_accuracy():
    """A record written before FLOPs were counted: seconds and test accuracy, no FLOPs."""
    rungs = time_to_accuracy(speedrun_record([0.65], [0.66], [3.0], flops=None), ladder=[0.6])
    assert rungs[0].reached and rungs[0].seconds == 3.0 and rungs[0].flops is None


def test_frame_and_renderers_show_the_speedrun_section():
    fast = speedrun_record([0.70, 0.81], [0.69, 0.80], [100.0, 100.0], device_name="AMD EPYC")
    slow = speedrun_record([0.55, 0.61], [0.56, 0.60], [20.0, 20.0], model="small_cnn",
                           flops=34_000_000, device_name="AMD EPYC")
    frame = speedrun_frame([fast, slow])
    assert list(frame.index) == ["fast_resnet", "small_cnn"]
    assert frame.loc["fast_resnet", "device"] == "cpu AMD EPYC fp32"
    assert frame.loc["fast_resnet", rung_column(0.8)] == "200.0 s · 0.00896 PF · test 80.00 (e2)"
    assert frame.loc["fast_resnet", rung_column(0.6)].startswith("100.0 s · 0.00448 PF")
    assert frame.loc["small_cnn", rung_column(0.6)].endswith("test 60.00 (e2)")
    assert frame.loc["small_cnn", rung_column(0.7)] == NOT_REACHED
    assert frame.loc["small_cnn", "GFLOP/img (train)"] == "0.034"
    page = render_markdown([fast, slow], [])
    assert "## speedrun" in page and "time to validation accuracy" in page
    assert "| fast&#95;resnet | cpu AMD EPYC fp32 | 2 | 0.175 |" in page
    console = Console(width=400, record=True)
    print_terminal_tables([fast, slow], console=console)
    text = console.export_text()
    assert "time to validation accuracy" in text and "0.00896 PF" in text


def test_other_sections_get_no_speedrun_table():
    record = speedrun_record([0.7], [0.7], [1.0], experiment="models")
    assert "time to validation accuracy" not in render_markdown([record], [])


def test_seeds_of_one_recipe_are_separate_lines():
    lines = [speedrun_record([0.6], [0.6], [1.0], seed=s) for s in (0, 1)]
    assert list(speedrun_frame(lines).index) == ["fast_resnet s0", "fast_resnet s1"]
    assert speedrun_frame([speedrun_record([0.6], [0.6], [1.0], status="failed")]) is None


def test_seeds_frame_sums_a_recipe_up_over_its_seeds():
    """Per recipe: honest accuracy per seed and its mean [min, max]; per rung the mean
    [min, max] of seconds and PFLOPs over the seeds that reached it, and how many did."""
    seeds = [speedrun_record([0.70, 0.86], [0.71, 0.87], [100.0, 100.0], seed=0, acc_top1_honest=0.85),
             speedrun_record([0.69, 0.85], [0.70, 0.86], [110.0, 120.0], seed=1, acc_top1_honest=0.84),
             speedrun_record([0.72, 0.84], [0.72, 0.85], [90.0, 90.0], seed=2, acc_top1_honest=0.83)]
    for record, honest in zip(seeds, (0.87, 0.86, 0.85), strict=True):
        record.acc_honest = honest
    other = speedrun_record([0.61, 0.66], [0.6, 0.65], [20.0, 20.0], model="small_cnn", flops=34_000_000)
    frame = seeds_frame([*seeds, other])
    assert list(frame.index) == ["fast_resnet", "small_cnn"]
    row = frame.loc["fast_resnet"]
    assert row["seeds"] == "0, 1, 2"
    assert row["honest per seed"] == "87.00 / 86.00 / 85.00"
    assert row["honest (mean [min, max])"] == "86.00 [85.00, 87.00]"
    assert row["top-1 honest (mean)"] == "84.00"
    # whole runs 200, 230, 180 s; every run trained 2 epochs of IMAGES at FLOPS
    assert row["whole run"] == "203.3 s [180.0 s, 230.0 s] · 0.00896 PF [0.00896 PF, 0.00896 PF]"
    # 70%: seed 0 at epoch 1 (100 s), seed 1 at epoch 2 (230 s), seed 2 at epoch 1 (90 s)
    assert row[rung_column(0.7)].startswith("140.0 s [90.0 s, 230.0 s] · ")
    assert row[rung_column(0.7)].endswith("(3 of 3)")
    assert row[rung_column(0.85)] == ("215.0 s [200.0 s, 230.0 s] · 0.00896 PF [0.00896 PF, 0.00896 PF]"
                                      " (2 of 3)")
    assert frame.loc["small_cnn", "honest per seed"] == "65.00"      # one seed: no range
    assert frame.loc["small_cnn", rung_column(0.7)] == NOT_REACHED
    page = render_markdown([*seeds, other], [])
    assert "### over seeds, per recipe" in page and "86.00 &#91;85.00, 87.00&#93;" in page
