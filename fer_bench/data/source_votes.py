"""``fer2013new.csv``, the FERPlus vote file both source formats share, and its name rules.

Rows with an empty ``Image name`` are skipped and counted; a name that appears twice is
kept once, at the position of its LATER row, with that row's votes (the exporter wrote
the later row's pixels over the earlier one's PNG). Those facts of the file go into the
``LoadReport`` (``VoteTable.warnings``, ``unnamed_rows``, ``duplicate_names``) and, for
duplicates, one WARNING record on the ``fer_bench.data.sources`` logger: they are nothing
the user can change, so never a Python warning. Text may start with a UTF-8 byte-order mark.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_bench.data.schema import USAGES, VOTE_COLUMNS
from fer_bench.errors import DataError

# The source readers share one logger, the entry point's (``load_source``): what users
# filter on and the packaging test checks.
log = logging.getLogger("fer_bench.data.sources")

VOTES_FILE = "fer2013new.csv"


@dataclass
class VoteTable:
    """Rows of ``fer2013new.csv`` that survive the name rules, in canonical order."""

    rows: int                       # data rows in the file
    row_index: np.ndarray           # int64 [N]: 0-based data-row index of each kept row
    names: list[str]
    usage: np.ndarray               # int8 [N]
    votes: np.ndarray               # int32 [N, 10]
    line_of: dict[str, int]         # name -> 1-based line of its winning row
    unnamed_rows: int = 0
    duplicate_names: list[str] = field(default_factory=list)
    duplicate_votes: dict[str, list[list[int]]] = field(default_factory=dict)  # every row's votes
    warnings: list[str] = field(default_factory=list)


def parse_votes(cells: list[str], csv_path: Path, line: int, first_col: int) -> list[int]:
    """The 10 vote counts of one row, or a DataError naming file, line and column."""
    try:
        votes = [int(c) for c in cells]
        if len(votes) == len(VOTE_COLUMNS) and min(votes) >= 0:
            return votes
    except ValueError:
        pass
    for k, col in enumerate(VOTE_COLUMNS):       # slow path: say exactly what is wrong
        where = f"{csv_path}: line {line}, column {first_col + k + 1} ({col})"
        if k >= len(cells) or cells[k].strip() == "":
            raise DataError(f"{where}: missing vote count")
        try:
            value = int(cells[k])
        except ValueError:
            raise DataError(f"{where}: vote count {cells[k]!r} is not an integer") from None
        if value < 0:
            raise DataError(f"{where}: vote count {value} is negative")
    raise DataError(f"{csv_path}: line {line}: expected {len(VOTE_COLUMNS)} vote columns, "
                    f"got {len(cells)}")


def read_vote_table(csv_path: Path) -> VoteTable:
    """Read ``fer2013new.csv`` and apply the name rules (skip unnamed, later duplicate wins)."""
    expected = ["Usage", "Image name", *VOTE_COLUMNS]
    usage_code = {u: i for i, u in enumerate(USAGES)}
    names: list[str | None] = []
    usages: list[int] = []
    votes: list[list[int]] = []
    lines: list[int] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [c.strip() for c in header] != expected:
            raise DataError(f"{csv_path}: line 1: header must be {','.join(expected)}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) < 2:
                raise DataError(f"{csv_path}: line {line}: expected {len(expected)} columns")
            usage = row[0].strip()
            if usage not in usage_code:
                raise DataError(f"{csv_path}: line {line}, column 1 (Usage): "
                                f"{usage!r} is not one of {', '.join(USAGES)}")
            usages.append(usage_code[usage])
            names.append(row[1].strip() or None)
            votes.append(parse_votes(row[2:], csv_path, line, first_col=2))
            lines.append(line)

    rows_of: dict[str, list[int]] = {}       # name -> its row indices, in file order
    for i, name in enumerate(names):
        if name is not None:
            rows_of.setdefault(name, []).append(i)
    keep = [i for i, name in enumerate(names) if name is not None and rows_of[name][-1] == i]
    duplicates = [n for n, rs in rows_of.items() if len(rs) > 1]
    table = VoteTable(
        rows=len(names),
        row_index=np.asarray(keep, dtype=np.int64),
        names=[names[i] for i in keep],
        usage=np.asarray([usages[i] for i in keep], dtype=np.int8),
        votes=np.asarray([votes[i] for i in keep], dtype=np.int32).reshape(-1, len(VOTE_COLUMNS)),
        line_of={names[i]: lines[i] for i in keep},
        unnamed_rows=sum(n is None for n in names),
        duplicate_names=duplicates,
        duplicate_votes={n: [votes[i] for i in rows_of[n]] for n in duplicates},
    )
    if duplicates:
        detail = "; ".join(f"{n} (lines {', '.join(str(lines[i]) for i in rows_of[n])})"
                           for n in duplicates[:10])
        if len(duplicates) > 10:
            detail += f"; and {len(duplicates) - 10} more"
        msg = (f"{csv_path}: {len(duplicates)} image name(s) appear more than once; "
               f"the later row wins: {detail}")
        table.warnings.append(msg)
        log.warning(msg)    # a fact of the file, nothing the user can change
    return table

