"""Test helper: a throwaway installed distribution with ``fer_bench.models`` entry points.

``make_entry_point_package`` writes a package and its ``*.dist-info`` (METADATA +
entry_points.txt) into a folder, exactly what pip leaves in site-packages, so
``importlib.metadata`` discovers it once the folder is on ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from fer_bench.models import ENTRY_POINT_GROUP

#: A minimal plain-factory plugin body: ``factory(num_classes, in_chans)`` -> [B, num_classes].
TINY_FACTORY_BODY = '''
import torch
from torch import nn

def factory(num_classes=8, in_chans=1):
    """Tiny test net: conv -> global average -> linear."""
    return nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
'''


def make_entry_point_package(
    tmp_path: Path,
    name: str,
    body: str,
    *,
    models: Mapping[str, str] | None = None,
    dist_name: str | None = None,
    version: str = "0.1",
    monkeypatch: pytest.MonkeyPatch | None = None,
    group: str = ENTRY_POINT_GROUP,
) -> Path:
    """Write package ``name`` (``name/__init__.py`` = ``body``) and its dist-info.

    ``models`` maps model name -> entry point target, either "module:attr" or just "attr"
    of the package module (default ``{name: "factory"}``), declared in entry-point ``group``
    (default ``fer_bench.models``; e.g. ``fer_bench.losses`` for losses). ``dist_name`` defaults to
    ``name``. Returns the folder to put on ``sys.path``; with ``monkeypatch`` given it is
    prepended now (undone after the test), importlib caches are cleared, and a module
    ``name`` is dropped from ``sys.modules`` now and again after the test.
    """
    dist_name = dist_name or name
    models = dict(models or {name: "factory"})
    site = tmp_path / f"site-{dist_name}"
    package = site / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(body))
    dist_info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    lines = [f"[{group}]"]
    for model, target in models.items():
        lines.append(f"{model} = {target if ':' in target else f'{name}:{target}'}")
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if monkeypatch is not None:
        monkeypatch.syspath_prepend(str(site))
        # Drop a same-named module of an earlier test now, and whatever this test imports
        # at teardown (undo runs in reverse: delitem restores None, setitem removes it).
        monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.delitem(sys.modules, name)
        importlib.invalidate_caches()
    return site
