"""The fer_bench pytest plugin stays out of other projects' runs (issue 13, part 2).

It is installed into every pytest run of the environment (``pytest11``), so a project
that has nothing to do with fer_bench must not see it validate ``FER_BENCH_*`` values,
import torch or the data layer, or fail; its options still show in ``pytest --help``.
"""

from __future__ import annotations

pytest_plugins = ["pytester"]

UNRELATED = """
import sys


def test_unrelated_project():
    assert 1 + 1 == 2


def test_nothing_heavy_of_fer_bench_was_imported():
    heavy = [m for m in ("torch", "fer_bench.data", "fer_bench.registry", "fer_bench.models", "fer_bench.identity.cell",
                         "fer_bench.training") if m in sys.modules]
    assert heavy == []
"""


def test_unrelated_project_passes_with_bad_fer_bench_settings(pytester, monkeypatch):
    monkeypatch.setenv("FER_BENCH_NHOT", "abc")
    monkeypatch.setenv("FER_BENCH_DATA", "/nonexistent")
    monkeypatch.setenv("FER_BENCH_SEEDS", "-3")
    monkeypatch.setenv("FER_BENCH_MODELS", "no_such_model")
    pytester.makeini("[pytest]\nfer_epochs = zero\n")
    pytester.makepyfile(test_other_project=UNRELATED)
    # a fresh interpreter, so "nothing imported" means what it says
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    output = result.stdout.str() + result.stderr.str()
    assert "fer_bench:" not in output and "error" not in output.lower()
    assert "warning" not in output.lower()


def test_options_still_show_in_help(pytester, monkeypatch):
    monkeypatch.setenv("FER_BENCH_NHOT", "abc")
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == 0
    help_text = result.stdout.str()
    for option in ("--fer-data", "--fer-models", "--fer-nhot", "--fer-splits", "--fer-seeds",
                   "--fer-epochs", "--fer-profile", "--fer-shard"):
        assert option in help_text, option
    assert "fer_bench grid" in help_text


def test_the_same_bad_value_is_a_usage_error_once_a_fer_bench_test_is_collected(pytester, monkeypatch):
    """The check is deferred, not dropped: with a fer_cell test, FER_BENCH_NHOT=abc is a
    usage error naming the option."""
    monkeypatch.setenv("FER_BENCH_NHOT", "abc")
    pytester.makepyfile(test_cells="def test_cell(fer_cell):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only")
    assert result.ret == 4     # pytest.ExitCode.USAGE_ERROR
    assert "--fer-nhot" in result.stderr.str() and "Traceback" not in result.stderr.str()
