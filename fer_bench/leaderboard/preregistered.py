"""The pre-registered contrasts of the converged grid (``leaderboard/PREREGISTRATION.md``),
computed from the records: the primary contrast and the five secondary ones, each paired by
seed, with its 95% t interval, its p-value, Holm's adjusted p-value over the secondary
family, and the verdict the plan fixed before the cells ran.

A contrast names its cells by identity fields (model, split, loss, epochs, precision, N),
never by a label shown on the page. The plan's decision rules:

* primary (P): two-sided paired t-test at alpha 0.05, the 95% interval reported whatever p;
* secondary (S1-S5): one family, Holm at familywise alpha 0.05; the intervals are
  unadjusted 95% intervals, the Holm-adjusted p stands beside them;
* "gain confirmed" (or "N-hot worse, confirmed"; for the loss interaction, "the gain is
  larger/smaller under mse than under cce, confirmed") only when the (Holm-adjusted, for a
  secondary) test rejects 0;
  "consistent with the study's claim" when the interval overlaps the claimed band;
  "rules out the claim" when the whole interval lies below the band's lower end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fer_bench.identity.record import CellRecord
from fer_bench.leaderboard.stats import (
    TIE_AWARE,
    TOP1,
    _paired_t_pvalue,
    gain_interval,
    succeeded,
)
from fer_bench.leaderboard.study_claims import Claim, gain_claim

ALPHA = 0.05


@dataclass(frozen=True)
class Block:
    """The cells of one block of the grid, by identity: ``model`` trained with ``loss`` for
    ``epochs`` epochs (None: any) in ``precision`` on ``split``; N is chosen by a contrast."""

    model: str
    split: str
    loss: str | None = "cce"
    epochs: int | None = 9
    precision: str = "bf16"

    def accuracy_by_seed(self, records: Sequence[CellRecord], nhot: int,
                         metric: str) -> dict[int, float]:
        """seed -> honest accuracy (fraction; ``metric`` tie-aware or top-1) of this block's
        successful N-hot cells on full FERPlus (a synthetic or subset cell never counts)."""
        out: dict[int, float] = {}
        for record in records:
            cell = record.cell
            if (cell.model != self.model or cell.split != self.split
                    or cell.variant != f"nhot-{nhot}" or cell.precision != self.precision
                    or (self.loss is not None and cell.recipe.loss != self.loss)
                    or (self.epochs is not None and cell.recipe.epochs != self.epochs)
                    or record.dataset_label != "ferplus" or not succeeded(record)):
                continue
            value = record.acc_honest if metric == TIE_AWARE else record.acc_top1_honest
            if value is not None:
                out[int(cell.seed)] = float(value)
        return out


@dataclass(frozen=True)
class Contrast:
    """``key`` ("P", "S1".."S5"): N = ``plus`` minus N = ``minus`` in ``block``, paired by
    seed; with ``baseline`` the difference of that difference and the same one in
    ``baseline`` (an interaction). ``claim``: what the verdict is measured against."""

    key: str
    label: str
    block: Block
    plus: int
    minus: int = 1
    baseline: Block | None = None

    @property
    def primary(self) -> bool:
        return self.key == "P"

    @property
    def claim(self) -> Claim | None:
        return None if self.baseline is not None else gain_claim(self.block.model,
                                                                 self.block.split)

    def differences(self, records: Sequence[CellRecord], metric: str) -> dict[int, float]:
        """seed -> the paired difference (fraction) over the seeds every side has."""
        sides = [self.block] + ([self.baseline] if self.baseline is not None else [])
        per_side = []
        for block in sides:
            plus = block.accuracy_by_seed(records, self.plus, metric)
            minus = block.accuracy_by_seed(records, self.minus, metric)
            per_side.append({s: plus[s] - minus[s] for s in plus.keys() & minus.keys()})
        seeds = set.intersection(*(set(side) for side in per_side))
        if self.baseline is None:
            return {s: per_side[0][s] for s in sorted(seeds)}
        return {s: per_side[0][s] - per_side[1][s] for s in sorted(seeds)}


_FAST = Block("fast_resnet", "ordinary")
_FAST_COMPLEX = Block("fast_resnet", "complex")
#: The plan's contrasts, in its order. P4's recipe is fixed by an amendment: any epochs.
CONTRASTS: tuple[Contrast, ...] = (
    Contrast("P", "fast_resnet, ordinary: 8-hot minus 1-hot", _FAST, 8),
    Contrast("S1", "fast_resnet, complex: 8-hot minus 1-hot", _FAST_COMPLEX, 8),
    Contrast("S2", "fast_resnet, ordinary: 3-hot minus 1-hot", _FAST, 3),
    Contrast("S3", "fast_resnet, complex: 3-hot minus 1-hot", _FAST_COMPLEX, 3),
    Contrast("S4", "fast_resnet, ordinary: (8-hot minus 1-hot) under mse minus under cce",
             Block("fast_resnet", "ordinary", loss="mse"), 8, baseline=_FAST),
    Contrast("S5", "VGG16, complex: 8-hot minus 1-hot",
             Block("vgg16", "complex", loss=None, epochs=None), 8),
)


def holm(p_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjusted p-values (Holm 1979): sorted ascending, the i-th (from 0)
    of m is max over j <= i of min(1, (m - j) p_(j)). A missing p stays None and does not
    count in m (the plan states n per contrast)."""
    present = sorted((p, key) for key, p in p_values.items() if p is not None)
    adjusted: dict[str, float | None] = {key: None for key in p_values}
    running = 0.0
    for index, (p, key) in enumerate(present):
        running = max(running, min(1.0, (len(present) - index) * p))
        adjusted[key] = running
    return adjusted


@dataclass(frozen=True)
class ContrastResult:
    """One contrast in one metric: ``n`` paired seeds, ``mean`` and ``ci`` in points,
    ``p`` raw and ``p_holm`` (secondaries) and the plan's verdict."""

    contrast: Contrast
    metric: str
    n: int
    mean: float | None
    ci: tuple[float, float] | None
    p: float | None
    p_holm: float | None

    @property
    def p_decisive(self) -> float | None:
        return self.p if self.contrast.primary else self.p_holm

    def verdict(self) -> str:
        if self.n == 0:
            return "no paired cells yet"
        if self.ci is None or self.p_decisive is None:
            return f"{self.n} paired seed(s): no interval yet"
        rejected = self.p_decisive < ALPHA
        low, high = self.ci
        if not rejected:
            sign = "no effect confirmed"
        elif self.contrast.baseline is not None:
            block, baseline = self.contrast.block, self.contrast.baseline
            sign = (f"the gain is {'larger' if low > 0 else 'smaller'} under {block.loss} "
                    f"than under {baseline.loss}, confirmed")
        else:
            sign = "gain confirmed" if low > 0 else "N-hot worse, confirmed"
        which = "" if self.contrast.primary else " after Holm"
        parts = [f"{sign}{which}"]
        claim = self.contrast.claim
        if claim is not None:
            claim_low, claim_high = claim.band
            if high < claim_low:
                parts.append(f"rules out the study's claim ({claim.band_text} points)")
            elif low <= claim_high:
                parts.append(f"consistent with the study's claim ({claim.band_text} points)")
            else:
                parts.append(f"above the study's band ({claim.band_text} points)")
        return "; ".join(parts)


def contrast_results(records: Sequence[CellRecord], metric: str = TIE_AWARE
                     ) -> list[ContrastResult]:
    """Every pre-registered contrast in ``metric`` (tie-aware or top-1), Holm over S1-S5."""
    raw = []
    for contrast in CONTRASTS:
        differences = np.asarray(list(contrast.differences(records, metric).values()))
        interval = gain_interval(differences) if differences.size else None
        raw.append((contrast, differences, interval,
                    _paired_t_pvalue(differences) if differences.size else None))
    adjusted = holm({c.key: p for c, _, _, p in raw if not c.primary})
    return [ContrastResult(c, metric, int(d.size),
                           float(100 * d.mean()) if d.size else None,
                           None if ci is None else (100 * ci[0], 100 * ci[1]),
                           p, None if c.primary else adjusted[c.key])
            for c, d, ci, p in raw]


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def contrast_table_lines(records: Sequence[CellRecord],
                         escape: Callable[[str], str] = str) -> list[str]:
    """The markdown table of every contrast in both metrics (empty without any grid cell)."""
    results = [r for metric in (TIE_AWARE, TOP1) for r in contrast_results(records, metric)]
    if not any(r.n for r in results):
        return []
    lines = ["| contrast | accuracy | n | mean (points) | 95% interval | p | p (Holm) | verdict |",
             "|---|---|---:|---:|---|---:|---:|---|"]
    for r in results:
        interval = "-" if r.ci is None else f"[{r.ci[0]:+.2f}, {r.ci[1]:+.2f}]"
        lines.append(f"| {r.contrast.key}: {escape(r.contrast.label)} | {r.metric} | {r.n} | "
                     f"{_number(r.mean, '+.2f')} | {interval} | {_number(r.p, '.3f')} | "
                     f"{'-' if r.contrast.primary else _number(r.p_holm, '.3f')} | "
                     f"{escape(r.verdict())} |")
    return lines
