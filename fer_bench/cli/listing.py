"""``fer-bench list models|losses|augmentations|splits|labels|aligners``: what each registry
holds."""

from __future__ import annotations

import warnings
from typing import Any

from rich.markup import escape
from rich.table import Table

from fer_bench.console import wide_console
from fer_bench.planning.catalog import KINDS, registry_of

__all__ = ["KINDS", "list_command"]

def _details(kind: str, item: Any) -> str:
    if item is None:
        return "?"
    if kind == "models":
        size = f"{item.input_size}x{item.input_size}"
        return f"input {size}, pretrained {'yes' if item.pretrained_available else 'no'}"
    if kind == "augmentations":
        return f"{item.multiple}x: {item.description}"
    if kind == "aligners":
        return (f"dlib {item.detector} detector at {item.upscale} px, upsample {item.upsample}, "
                f"eyes to {item.left_eye} / {item.right_eye}")
    if kind == "losses":
        return "one-hot drawn per epoch" if item.draws_targets else ""
    return getattr(item, "description", "")


def list_command(kind: str) -> int:
    """Print one rich table of ``kind``'s registry; each entry's import is tried.

    Returns 0 when every entry loads (also when none is registered), 1 when any fails.
    """
    registry = registry_of(kind)
    with warnings.catch_warnings():   # failures are shown in the status column instead
        warnings.simplefilter("ignore")
        entries = registry.entries(load=True)
    console = wide_console()
    table = Table(title=f"fer_bench {kind} (entry-point group {registry.group!r})")
    for column in ("name", "distribution", "entry point", "details", "status"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        status = "ok" if entry.loaded else f"[red]import error: {escape(str(entry.error))}[/red]"
        distribution = entry.distribution + (f" {entry.version}" if entry.version else "")
        table.add_row(escape(entry.name), escape(distribution), escape(entry.value),
                      escape(_details(kind, entry.item)), status)
    console.print(table)
    for family in registry.families():
        console.print(f"family {escape(family.template)}: any such name works "
                      f"({escape(family.description)})", highlight=False)
    if not entries:
        console.print(f"no {kind} registered: install fer-baselines (pip install -e baselines) "
                      f"or a package with a {registry.group!r} entry point")
    return 0 if all(entry.loaded for entry in entries) else 1
