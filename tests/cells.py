"""Helpers that build cells and task data the way the plugin and CLI do (tests only)."""

from __future__ import annotations

from dataclasses import replace

from fer_bench.cell import Cell
from fer_bench.config import TrainConfig
from fer_bench.data.variants import nhot_variant
from fer_bench.registry import ModelSpec
from fer_bench.tasks import TaskData, build_task_data
from fer_bench.training.runner import resolve_cell, resolve_config


def make_cell(spec: ModelSpec, clean, *, nhot: int = 3, split: str = "ordinary", seed: int = 0,
              config: TrainConfig | None = None, device: str = "cpu") -> Cell:
    """The identity ``spec`` gets on ``clean`` (CPU unless told otherwise)."""
    return resolve_cell(spec, variant=nhot_variant(nhot), split=split, seed=seed,
                        config=config or resolve_config(spec), dataset_fingerprint=clean.fingerprint,
                        device=device)


def task_for(spec: ModelSpec, clean, **kwargs) -> TaskData:
    """Task data of ``make_cell(spec, clean, **kwargs)`` on the CPU."""
    return build_task_data(clean, make_cell(spec, clean, **kwargs))


def rebind(data: TaskData, spec: ModelSpec, config: TrainConfig | None = None) -> TaskData:
    """The same tensors as another model / recipe's cell (model, release and recipe replaced)."""
    cell = data.cell.with_axes(model=spec.name, model_release=spec.release or "unregistered",
                               recipe=config or resolve_config(spec))
    return replace(data, cell=cell)
