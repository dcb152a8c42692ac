"""Grid order and sharding of the fer_bench plugin: shards cover the grid exactly once."""

from __future__ import annotations

import re

import pytest

# Imported here, before any in-process pytest run: pytester restores sys.modules after each
# run, and torch cannot be imported a second time in one process.
import fer_bench.models  # noqa: F401  (imports torch)
import fer_bench.training.runner  # noqa: F401  (the registries that import torch)
from fer_bench.planning.profiles import parse_int_list, parse_name_list, parse_shard, select_shard

pytest_plugins = ["pytester"]

CELLS = [f"{m}-n{n}-{s}-s{seed}" for m in ("vgg16", "alpha_net", "small_cnn")
         for n in range(1, 9) for s in ("ordinary", "complex") for seed in (0, 1)]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_shards_cover_the_grid_exactly_once(count):
    shards = [select_shard(CELLS, (index, count)) for index in range(1, count + 1)]
    merged = [cell for shard in shards for cell in shard]
    assert sorted(merged) == sorted(CELLS)           # every cell, none twice
    assert len(set(merged)) == len(CELLS)
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1              # balanced


def test_shard_takes_every_nth_cell():
    assert select_shard(CELLS, (2, 3)) == CELLS[1::3]
    assert select_shard(CELLS, None) == CELLS


@pytest.mark.parametrize("text", ["0/2", "3/2", "1-2", "a/b", "1/2/3", "", "1/0"])
def test_bad_shard_strings_raise(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_list_parsing():
    assert parse_int_list("1-8", what="n") == tuple(range(1, 9))
    assert parse_int_list("8,1,3,3", what="n") == (1, 3, 8)
    assert parse_int_list("0,2-4", what="seeds") == (0, 2, 3, 4)
    assert parse_name_list(" vgg16, dan,vgg16 ", what="m") == ("vgg16", "dan")
    with pytest.raises(ValueError, match="--fer-nhot"):
        parse_int_list("0-3", what="--fer-nhot", low=1, high=8)
    with pytest.raises(ValueError, match="cannot read"):
        parse_int_list("5-2", what="n")


# ---------------------------------------------------------------- through pytest itself
CONFTEST = """
from fer_bench.models import register_model, unregister_model

def tiny_net(num_classes=8, in_chans=1):
    import torch
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_chans * 48 * 48, num_classes))

for _name in ("shard_net_a", "shard_net_b"):
    unregister_model(_name)
    register_model(tiny_net, name=_name)
"""
TEST_MODULE = """
def test_cell(fer_cell):
    pass
"""


@pytest.fixture
def grid_dir(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_grid=TEST_MODULE)
    yield pytester
    for name in ("shard_net_a", "shard_net_b"):
        fer_bench.models.unregister_model(name)


def collected_ids(pytester, *args: str) -> list[str]:
    result = pytester.runpytest_inprocess(
        "--collect-only", "-q", "--fer-models", "shard_net_b,shard_net_a", "--fer-nhot", "1,2,8",
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args,
    )
    assert result.ret == 0, result.stdout.str()
    return [m.group(1) for line in result.outlines if (m := re.search(r"test_cell\[(.+)\]", line))]


def test_pytest_shards_partition_the_collected_grid(grid_dir):
    everything = collected_ids(grid_dir)
    assert len(everything) == 2 * 3 * 2                      # models x N x splits
    assert everything == collected_ids(grid_dir)              # same order every time
    assert everything[0] == "shard_net_b-n1-ordinary-s0"       # the options' order
    assert everything[-1] == "shard_net_a-n8-complex-s0"
    for count in (2, 3):
        shards = [collected_ids(grid_dir, "--fer-shard", f"{i}/{count}") for i in range(1, count + 1)]
        merged = [cell for shard in shards for cell in shard]
        assert sorted(merged) == sorted(everything) and len(merged) == len(set(merged))
        assert shards[0] == everything[0::count]


def test_pytest_bad_shard_is_a_usage_error(grid_dir):
    result = grid_dir.runpytest_inprocess("--collect-only", "--fer-shard", "4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*fer_bench*--fer-shard*need 1 <= i <= n*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_shard_splits_every_collected_module_together(grid_dir):
    grid_dir.makepyfile(test_other=TEST_MODULE.replace("test_cell", "test_other_cell"))
    result = grid_dir.runpytest_inprocess(
        "--collect-only", "-q", "--fer-models", "shard_net_a", "--fer-nhot", "1,2,8",
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--fer-shard", "1/2")
    lines = [line for line in result.outlines if "::" in line]
    assert len(lines) == 6                                    # 12 cells over two modules, halved
    assert any("test_other.py" in line for line in lines) and any("test_grid.py" in line for line in lines)


def test_shard_from_environment_variable(grid_dir, monkeypatch):
    everything = collected_ids(grid_dir)
    monkeypatch.setenv("FER_BENCH_SHARD", "2/2")
    assert collected_ids(grid_dir) == everything[1::2]
    # the command line wins over the environment
    assert collected_ids(grid_dir, "--fer-shard", "1/2") == everything[0::2]


def test_default_models_skip_a_broken_study_plugin(tmp_path, monkeypatch):
    """The study's four are the default only when all four import; a broken one falls back
    to the classical four instead of failing the whole collection."""
    from fer_bench.planning.profiles import CLASSICAL_MODELS, STUDY_MODELS
    from fer_bench.pytest.plugin import default_models
    from tests.helpers.plugin_pkg import TINY_FACTORY_BODY, make_entry_point_package

    make_entry_point_package(tmp_path, "study_ok", TINY_FACTORY_BODY,
                             models={name: "factory" for name in STUDY_MODELS if name != "vgg16"},
                             monkeypatch=monkeypatch)
    assert default_models() == STUDY_MODELS
    make_entry_point_package(tmp_path, "study_broken", "raise ImportError('no such lib')\n",
                             models={"mten": "factory"}, dist_name="a-broken-study",
                             monkeypatch=monkeypatch)
    with pytest.warns(UserWarning):
        assert default_models() == CLASSICAL_MODELS
