"""What a person at a terminal sees (issue 23): the plan first, every cell's line above
pytest's own progress line (which goes on unbroken), pytest-benchmark's tables condensed,
and fer_bench's results last. The run happens in a pseudo-terminal; the screen is rebuilt
from the bytes written (carriage returns overwrite, colours are dropped)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _pytest._io import TerminalWriter

from tests.helpers.cells import tiny_model_conftest

pytest_plugins = ["pytester"]

MODULE = """
def test_grid(fer_cell, benchmark):
    assert fer_cell.run(benchmark).status == "ok"
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_a_terminal(cwd: Path, *args: str, timeout: float = 240) -> list[str]:
    """Run ``python -m pytest ARGS`` with its output on a pseudo-terminal, 120 columns;
    returns the screen's lines once it ended."""
    main, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "50", "OMP_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=cwd, env=env,
                               stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:          # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=timeout)
    os.close(main)
    return screen(b"".join(chunks).decode("utf-8", "replace"))


def screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: "\\r" returns to the line's start, what follows
    overwrites; "\\n" (the pty writes "\\r\\n") starts a new line."""
    lines: list[list[str]] = [[]]
    column = 0
    for char in ANSI.sub("", raw):
        if char == "\n":
            lines.append([])
            column = 0
        elif char == "\r":
            column = 0
        else:
            line = lines[-1]
            line.extend(" " * (column - len(line) + 1) if column >= len(line) else "")
            line[column] = char
            column += 1
    return ["".join(line).rstrip() for line in lines]


@pytest.fixture
def project(pytester, data_dir):
    pytester.makeconftest(tiny_model_conftest("out_tiny"))
    pytester.makepyfile(test_grid=MODULE)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest\n")
    return pytester.path, ("test_grid.py", "--fer-profile", "smoke", "--fer-epochs", "1",
                           "--fer-data", str(data_dir), "--fer-models", "out_tiny",
                           "--fer-nhot", "1,8", "--fer-splits", "ordinary,complex",
                           "--fer-results", str(pytester.path / "results"), "--fer-plan", "cells",
                           "--benchmark-json", str(pytester.path / "out.json"))


def test_the_terminal_shows_plan_cells_above_pytest_s_line_and_the_answer_last(project):
    root, args = project
    lines = run_in_a_terminal(root, *args)
    text = "\n".join(lines)
    pytest_lines = [i for i, line in enumerate(lines) if line.startswith("test_grid.py")]
    assert len(pytest_lines) == 1, text                  # the file is never printed again
    assert re.match(r"test_grid\.py \.\.\.\. +\[100%\]$", lines[pytest_lines[0]]), text
    cells = [i for i, line in enumerate(lines) if line.startswith("fer_bench [")]
    assert [lines[i][:len("fer_bench [4/4]")] for i in cells] == \
        [f"fer_bench [{n}/4]" for n in range(1, 5)], text
    assert cells == list(range(cells[0], cells[0] + 4)) and cells[-1] + 1 == pytest_lines[0]
    plan = next(i for i, line in enumerate(lines) if line.startswith("fer_bench plan: 4 cells"))
    assert plan < cells[0]
    tables = [i for i, line in enumerate(lines) if re.search(r"-+ benchmark '", line)]
    header = lines[tables[0] + 1]
    assert all(name in header for name in ("Min", "Mean", "Max", "Rounds"))
    assert not any(name in header for name in ("StdDev", "IQR", "OPS", "Outliers"))
    results = next(i for i, line in enumerate(lines) if "fer_bench results" in line)
    assert results > tables[-1]
    assert any(line.startswith("pytest-benchmark's tables above:") for line in lines[results:])

    full = "\n".join(run_in_a_terminal(root, *args, "--fer-benchmark-tables", "full"))
    assert "StdDev" in full and "IQR" in full and "4 from the store" in full


def test_the_private_pieces_the_output_relies_on_are_there(pytester):
    """``progress`` reads pytest's current line from ``TerminalWriter._current_line``;
    ``plugin_plan.condense_benchmark_tables`` sets pytest-benchmark's ``columns``."""
    writer = TerminalWriter(file=open(os.devnull, "w"))   # noqa: SIM115
    writer.write("\nbenchmarks/test_nhot.py ")
    writer.write("..")
    assert writer._current_line == "benchmarks/test_nhot.py .."
    from pytest_benchmark.session import BenchmarkSession

    assert "self.columns" in Path(sys.modules[BenchmarkSession.__module__].__file__).read_text()
