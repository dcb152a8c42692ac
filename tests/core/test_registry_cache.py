"""The registry reads its entry-point group once per process, imports and coerces a target
once, gives each warning once, re-reads after ``refresh()`` or a ``sys.path`` change, and
imports its declared built-in modules on first use (no registration by importing a
package)."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
import textwrap
import warnings

import pytest

from fer_bench.errors import ModelError
from fer_bench.models import ENTRY_POINT_GROUP, ModelSpec, _as_spec
from fer_bench.registry import Registry, all_registries, refresh_registries
from tests.core.test_import_graph import LAYERS, PACKAGE, layer_of, module_name
from tests.helpers.plugin_pkg import TINY_FACTORY_BODY, make_entry_point_package


@pytest.fixture
def metadata_reads(monkeypatch):
    """Counts the registry's ``importlib.metadata.entry_points`` calls (its metadata reads).
    Calls from elsewhere are not counted: torch reads group ``torch.backends`` when it is
    first imported, which may happen inside a test."""
    calls: list[str] = []
    real = importlib.metadata.entry_points

    def counting(**kwargs):
        if sys._getframe(1).f_globals.get("__name__") == "fer_bench.registry":
            calls.append(kwargs.get("group", ""))
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    return calls


def _counting_models(coerced: list[str]) -> Registry[ModelSpec]:
    def coerce(name, obj, entry):
        coerced.append(name)
        return _as_spec(name, obj, entry)
    return Registry("model", ENTRY_POINT_GROUP, coerce, ModelError)


def test_group_read_once_target_coerced_once(tmp_path, monkeypatch, metadata_reads):
    make_entry_point_package(tmp_path, "oncepkg", TINY_FACTORY_BODY, monkeypatch=monkeypatch)
    coerced: list[str] = []
    models = _counting_models(coerced)
    first = models.get("oncepkg")
    for _ in range(50):
        assert models.get("oncepkg") is first
        assert "oncepkg" in models and "oncepkg" in models.names()
        assert models.entry("oncepkg").loaded
    assert len(models) == len(models.entries(load=True))
    assert metadata_reads == [ENTRY_POINT_GROUP]
    assert coerced.count("oncepkg") == 1
    assert first.source == "oncepkg==0.1 (oncepkg:factory)"


def test_refresh_and_a_new_path_read_the_group_again(tmp_path, monkeypatch, metadata_reads):
    models = _counting_models([])
    assert "latepkg" not in models
    # A distribution put on sys.path mid-process is seen without asking (the path changed).
    make_entry_point_package(tmp_path, "latepkg", TINY_FACTORY_BODY, monkeypatch=monkeypatch)
    assert "latepkg" in models
    reads = len(metadata_reads)
    # One installed into a folder already on the path (pip install mid-process) is seen
    # only after refresh().
    site = next(p for p in sys.path if p.endswith("site-latepkg"))
    package = make_entry_point_package(tmp_path / "staging", "laterpkg", TINY_FACTORY_BODY)
    for item in package.iterdir():
        item.rename(f"{site}/{item.name}")
    importlib.invalidate_caches()
    assert "laterpkg" not in models and len(metadata_reads) == reads
    models.refresh()
    assert "laterpkg" in models and len(metadata_reads) == reads + 1
    monkeypatch.delitem(sys.modules, "laterpkg", raising=False)
    # refresh_registries() reaches every registry of the process.
    assert models in all_registries()
    refresh_registries()
    assert "laterpkg" in models and len(metadata_reads) == reads + 2


def test_each_warning_is_given_once(tmp_path, monkeypatch):
    make_entry_point_package(tmp_path, "dupa", TINY_FACTORY_BODY, models={"twice": "factory"},
                             dist_name="dup-a", monkeypatch=monkeypatch)
    make_entry_point_package(tmp_path, "dupb", TINY_FACTORY_BODY, models={"twice": "factory"},
                             dist_name="dup-b", monkeypatch=monkeypatch)
    body = TINY_FACTORY_BODY + ("from fer_bench.models import ModelSpec\n"
                                "spec = ModelSpec(name='other_name', factory=factory)\n")
    make_entry_point_package(tmp_path, "renamedpkg", body, models={"renamed": "spec"},
                             monkeypatch=monkeypatch)
    make_entry_point_package(tmp_path, "shadowpkg", TINY_FACTORY_BODY, monkeypatch=monkeypatch)
    make_entry_point_package(tmp_path, "brokenonce", 'raise RuntimeError("broken once")\n',
                             monkeypatch=monkeypatch)
    models = _counting_models([])
    models.register("shadowpkg", lambda num_classes=8, in_chans=1: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            models.get("twice"), models.get("renamed"), models.get("shadowpkg")
            models.names(loadable_only=True)
            models.entries(load=True, warn=True)
    messages = [str(w.message) for w in caught]
    assert [m for m in set(messages) if messages.count(m) > 1] == []
    assert [m for m in messages if "registered twice" in m and "keeping dup-a==0.1" in m]
    assert [m for m in messages if "carries ModelSpec name 'other_name'" in m]
    assert [m for m in messages if "in-process model 'shadowpkg' shadows shadowpkg==0.1" in m]
    assert [m for m in messages if "'brokenonce = brokenonce:factory'" in m]
    # The broken plug-in still raises its own error on every lookup by name.
    for _ in range(2):
        with pytest.raises(ModelError, match=r"'brokenonce'.*RuntimeError: broken once"):
            models.get("brokenonce")


def test_builtin_modules_are_imported_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "h19_defs.py").write_text(textwrap.dedent('''
        from fer_bench.registry import Registry
        THINGS = Registry("thing", "h19.things", lambda name, obj, entry: obj,
                          builtins=("h19_builtin",))
        BROKEN = Registry("gadget", "h19.gadgets", lambda name, obj, entry: obj,
                          builtins=("h19_broken_builtin",))
    '''))
    (tmp_path / "h19_builtin.py").write_text(
        "from h19_defs import THINGS\nTHINGS.register('own', 1, builtin=True)\n"
        "assert THINGS.get('own') == 1   # a lookup inside its own import is fine\n")
    (tmp_path / "h19_broken_builtin.py").write_text("raise ImportError('no such helper')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("h19_defs", "h19_builtin", "h19_broken_builtin"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    defs = importlib.import_module("h19_defs")
    try:
        assert "h19_builtin" not in sys.modules        # declared, not imported
        assert defs.THINGS.names() == ["own"]
        assert "h19_builtin" in sys.modules
        assert defs.THINGS.entry("own").builtin and defs.THINGS.release("own") is None
        for _ in range(2):   # a failing built-in module raises, and is tried again
            with pytest.raises(ImportError, match="no such helper"):
                defs.BROKEN.names()
    finally:
        for name in ("h19_defs", "h19_builtin", "h19_broken_builtin"):
            sys.modules.pop(name, None)


def test_importing_fer_bench_data_registers_nothing():
    """In a fresh interpreter: importing the data package and the registries' modules does
    not import ``ferplus_ms``; the first lookup does, and lists Microsoft's modes."""
    script = textwrap.dedent('''
        import sys
        import fer_bench.data
        from fer_bench.data.labels.treatments import LABELS
        from fer_bench.data.splits import SPLITS
        from fer_bench.training.augment.base import AUGMENTATIONS
        MS = "fer_bench.data.labels.ferplus_ms"
        SETS = ("fer_bench.training.augment.sets", "fer_bench.training.augment.adaptive")
        assert MS not in sys.modules and not any(m in sys.modules for m in SETS)
        assert "official-majority" in SPLITS.names()
        assert MS in sys.modules
        assert LABELS.get("ms-majority").cleaning == "ferplus-ms"
        assert {"flip_rot20", "rand_flip", "adaptive_x1=5_x2=25"} <= set(AUGMENTATIONS.names())
        assert all(m in sys.modules for m in SETS)
        assert fer_bench.data.make_split.__module__ == "fer_bench.data.splits"
        assert callable(fer_bench.data.clean)
        print("ok")
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def _declared_builtins() -> dict[str, list[str]]:
    """module -> the ``builtins=(...)`` module names of the ``Registry(...)`` it creates,
    read from fer_bench's source with ``ast``."""
    found: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Registry":
                for keyword in node.keywords:
                    if keyword.arg == "builtins":
                        found.setdefault(module_name(path), []).extend(
                            ast.literal_eval(keyword.value))
    return found


def test_builtin_modules_are_no_hidden_arrow_up_a_layer():
    """A built-in module is a lazy import of the registry's module that the import graph
    cannot see: it must live in that module's layer and exist."""
    declared = _declared_builtins()
    assert {"fer_bench.data.labels.treatments", "fer_bench.data.splits",
            "fer_bench.training.augment.base"} <= set(declared)
    wrong = [f"{owner} ({LAYERS[layer_of(owner)][0]}) -> {module}"
             for owner, modules in declared.items() for module in modules
             if importlib.util.find_spec(module) is None or layer_of(module) != layer_of(owner)]
    assert wrong == []
    runtime = {module for registry in all_registries() for module in registry.builtins
               if module.startswith("fer_bench.")}
    assert runtime <= {m for modules in declared.values() for m in modules}
