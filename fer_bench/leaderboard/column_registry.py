"""The registry of leaderboard columns: ``Column``, ``COLUMNS`` (group ``fer_bench.columns``).

A leaderboard column is one entry of ``COLUMNS``, a ``fer_bench.registry.Registry`` like
every other extensible concept. Three kinds of entries, shown in this order:

* fer_bench's own columns (``leaderboard/columns.py``), in the order they are declared;
* columns of installed packages: entry-point group ``fer_bench.columns``, each entry point's
  target a ``Column`` (``my_col = "my_pkg.columns:MEDIAN_KL"``), alphabetically by name;
* columns registered in this process (``register_column``), in registration order: an
  experiment module (``benchmarks/test_*.py``) declares its own column in the same file
  as its ``fer_experiment`` marker.

**An experiment module's column outside its pytest process.** ``fer-bench leaderboard``
reads the run's JSON in another process, where the module was never imported. So the
plugin writes each in-process column that applies to the run's experiments into the JSON
(``fer_bench.columns``: name, experiments, the file of the module that registered it,
relative to pytest's rootdir: ``declared_columns``), and the leaderboard imports that file
when a declared column is not registered (``load_declared_columns``): the same column,
computed from the merged records of every shard. A file that cannot be found or imported
is one warning naming the column and the file, and the column is left out. Only ``.py``
files named by a results file's ``fer_bench.columns`` are ever imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_bench.errors import ConfigError
from fer_bench.registry import BUILTIN, IN_PROCESS, Entry, Registry

if TYPE_CHECKING:
    from fer_bench.leaderboard.rows import RowSummary

#: The drawn tables of a split, in order (a terminal cannot hold all columns in one):
#: tie-aware accuracy, top-1 accuracy beside it, the comparisons, the costs.
ACCURACY = "accuracy"
TOP1_PART = "top-1"
COMPARISON = "comparison"
COST = "cost"
PARTS = (ACCURACY, TOP1_PART, COMPARISON, COST)
#: The key of the column declarations in a results file's top-level ``fer_bench`` block.
DECLARATIONS_KEY = "columns"


@dataclass(frozen=True)
class Column:
    """One leaderboard column after the variant columns.

    ``name``: the header. ``fn(row)`` returns the display text of one ``RowSummary`` (its
    ``records`` hold every seed's ``CellRecord``); ``experiments`` limits the column to
    those sections (empty: every section); ``part`` picks the drawn table (``PARTS``);
    ``when(rows)`` hides the column from a table where it means nothing (e.g. best N
    without two N-hot variants); ``text`` columns are left-aligned and may wrap.
    ``origin``: the file of the module that registered it in-process (set by
    ``register_column``; "" for built-ins and entry points).
    """

    name: str
    fn: Callable[[RowSummary], str]
    experiments: tuple[str, ...] = ()
    part: str = ACCURACY
    when: Callable[[Sequence[RowSummary]], bool] | None = None
    text: bool = False
    origin: str = field(default="", compare=False)

    def applies(self, experiment: str, rows: Sequence[RowSummary]) -> bool:
        if self.experiments and experiment not in self.experiments:
            return False
        return self.when is None or bool(self.when(rows))


def _coerce(name: str, obj: Any, entry: Entry) -> Column:
    if not isinstance(obj, Column):
        raise ConfigError(f"leaderboard column {name!r} ({entry.source}): target is a "
                          f"{type(obj).__name__}, not a fer_bench.leaderboard.columns.Column")
    if obj.part not in PARTS:
        raise ConfigError(f"leaderboard column {name!r} ({entry.source}): part {obj.part!r} "
                          f"is not one of {', '.join(PARTS)}")
    if isinstance(obj.experiments, str):
        raise ConfigError(f"leaderboard column {name!r} ({entry.source}): experiments must be "
                          f"a tuple of names, not the string {obj.experiments!r}")
    return obj if obj.name == name else replace(obj, name=name)


#: Every leaderboard column (see the module docstring for the order they are shown in).
COLUMNS: Registry[Column] = Registry("leaderboard column", "fer_bench.columns", _coerce,
                                     option="column")
_BUILTIN_ORDER: list[str] = []
_IN_PROCESS_ORDER: list[str] = []
#: ``sys.modules`` name prefix of the experiment module files imported for their columns.
IMPORTED_MODULE_PREFIX = "fer_bench_columns_"


def register_builtin(column: Column) -> None:
    """Add one of fer_bench's own columns (shown in the order they are added)."""
    if column.name in _BUILTIN_ORDER:
        raise ConfigError(f"leaderboard column {column.name!r} is declared twice")
    COLUMNS.register(column.name, column, builtin=True)
    _BUILTIN_ORDER.append(column.name)


def register_column(column: Column) -> Column:
    """Add ``column`` in this process (an experiment module, a notebook); returns it.

    Shown after the built-in and installed columns, in registration order. The file of
    the calling module is kept as ``column.origin``, so a run's JSON can name it
    (``declared_columns``).
    """
    caller = sys._getframe(1).f_globals.get("__file__") or ""
    column = replace(column, origin=str(caller)) if caller and not column.origin else column
    item = COLUMNS.register(column.name, column)
    if column.name in _IN_PROCESS_ORDER:
        _IN_PROCESS_ORDER.remove(column.name)
    _IN_PROCESS_ORDER.append(column.name)
    return item


def unregister_column(name: str) -> None:
    """Remove an in-process column (no-op if absent)."""
    COLUMNS.unregister(name)
    if name in _IN_PROCESS_ORDER:
        _IN_PROCESS_ORDER.remove(name)


def registered_columns() -> list[Column]:
    """Every loadable column in display order: built-ins, installed, in-process. A broken
    installed column is warned about (once) and left out."""
    entries = {e.name: e for e in COLUMNS.entries(load=True, warn=True) if e.loaded}
    in_process = [n for n in _IN_PROCESS_ORDER
                  if n in entries and entries[n].distribution == IN_PROCESS]
    builtin = [n for n in _BUILTIN_ORDER if n in entries and n not in in_process]
    installed = sorted(n for n, e in entries.items()
                       if e.distribution not in (IN_PROCESS, BUILTIN))
    return [entries[n].item for n in (*builtin, *installed, *in_process)]


# ----------------------------------------------------------------------------- run JSON
def _display_path(origin: str, root: Path | None) -> str:
    path = Path(origin)
    if root is not None:
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def declared_columns(experiments: Iterable[str], root: Path | None = None) -> list[dict[str, Any]]:
    """The in-process columns that apply to ``experiments``, as a run's JSON holds them:
    ``{"name", "experiments": [...], "module": file}`` (``module`` relative to ``root``,
    pytest's rootdir, when inside it). Empty when no module registered a column."""
    wanted = set(experiments)
    declared = []
    for entry in COLUMNS.entries():
        column = entry.item
        if entry.distribution != IN_PROCESS or not isinstance(column, Column):
            continue
        if column.experiments and not wanted & set(column.experiments):
            continue
        declared.append({"name": entry.name, "experiments": list(column.experiments),
                         "module": _display_path(column.origin, root) if column.origin else ""})
    return declared


def _candidates(module: str, results_file: str) -> list[Path]:
    path = Path(module)
    if path.is_absolute():
        return [path]
    bases = [Path.cwd()]
    if results_file:
        bases += list(Path(results_file).resolve().parents)
    return [base / path for base in bases]


def _import_file(path: Path) -> None:
    """Import the module file ``path`` once per process (its folder on ``sys.path`` while
    it runs, as pytest imports a test module)."""
    name = IMPORTED_MODULE_PREFIX + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def load_declared_columns(provenance: Sequence[Mapping[str, Any]]) -> list[str]:
    """Register the columns the results files declare (``fer_bench.columns``) that this
    process does not know, by importing the module file that declared them. Returns the
    names it could not load (each warned about in one line)."""
    missing = []
    for source in provenance:
        block = source.get("fer_bench") if isinstance(source, Mapping) else None
        declarations = block.get(DECLARATIONS_KEY) if isinstance(block, Mapping) else None
        for declaration in declarations if isinstance(declarations, list) else ():
            if not isinstance(declaration, Mapping):
                continue
            name, module = declaration.get("name"), str(declaration.get("module") or "")
            if not isinstance(name, str) or name in COLUMNS:
                continue
            problem = _load_one(name, module, str(source.get("path") or ""))
            if problem:
                where = f"{source.get('path')}: " if source.get("path") else ""
                warnings.warn(f"{where}leaderboard column {name!r} (experiments "
                              f"{', '.join(declaration.get('experiments') or []) or 'all'}) "
                              f"is left out: {problem}", stacklevel=2)
                missing.append(name)
    return missing


def _load_one(name: str, module: str, results_file: str) -> str:
    """"" when importing ``module`` registered ``name``; else what went wrong."""
    if not module.endswith(".py"):
        return f"no module file is recorded for it ({module!r})"
    found = next((p for p in _candidates(module, results_file) if p.is_file()), None)
    if found is None:
        return (f"its module {module} is not found here (run fer-bench leaderboard in the "
                "folder the benchmarks ran in)")
    try:
        _import_file(found.resolve())
    except Exception as exc:   # any failure of the experiment's own module
        return f"importing {found} failed: {type(exc).__name__}: {exc}"
    return "" if name in COLUMNS else f"{found} did not register it"
