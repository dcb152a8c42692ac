"""The study's claims, per split and per model as the report gives them, and the verdicts
read against them by the rules fixed in ``leaderboard/PREREGISTRATION.md``.

Claims (SPEC "Numbers the study reports"; report abstract, 4.4, 4.5):

* ordinary faces, every model: N-hot beats 1-hot by **+2 to +4 points** (4.4, abstract);
* complex faces, VGG16: the gain "rises to about **+10 points**" (abstract, 4.5), and VGG16
  trained on 1-hot reaches only **about 55%** (4.5);
* complex faces, RAN / DAN / MTEN: **65% to 70%** at 1-hot (4.5). The report gives no
  complex-face gain for any model but VGG16, so another model's complex-split gain is set
  against the general +2 to +4 claim, and the verdict says so.

"About X" is taken as the point X: "consistent" then means the interval contains X.

Decision rules (pre-registered): "gain confirmed" only when the 95% interval excludes 0;
"consistent with the study's claim" when the interval overlaps the claimed band; "rules out
the claim" when the whole interval lies below the band's lower end. An interval wholly
above the band is said to be so. Bounds are compared as printed (2 decimals, points).
"""

from __future__ import annotations

from dataclasses import dataclass

from fer_bench.leaderboard.stats import GainSummary

#: The four models of the study (report 3.5), by their registered names.
STUDY_MODELS = ("vgg16", "ran", "dan", "mten")


@dataclass(frozen=True)
class Claim:
    """One claim of the study: ``band`` (low, high) in points (a gain) or percent (an
    accuracy level); ``quote``: what the report says; ``source``: where; ``note``: why this
    claim is the reference for a row it does not name (empty when it names it)."""

    band: tuple[float, float]
    quote: str
    source: str
    note: str = ""

    @property
    def band_text(self) -> str:
        low, high = self.band
        return f"{low:+g}" if low == high else f"{low:+g} to {high:+g}"

    def text(self) -> str:
        """The claim as quoted, with its source (and note), for a sentence."""
        note = f"; {self.note}" if self.note else ""
        return f"{self.quote} ({self.source}{note})"


ORDINARY_GAIN = Claim((2.0, 4.0), "N-hot beats 1-hot by +2 to +4 points, depending on the model",
                      "report 4.4 and abstract")
VGG16_COMPLEX_GAIN = Claim((10.0, 10.0), "for VGG16 on complex faces the N-hot gain rises to "
                           "about +10 points", "report abstract and 4.5")
GENERAL_GAIN_ON_COMPLEX = Claim(
    (2.0, 4.0), "N-hot beats 1-hot by +2 to +4 points, depending on the model",
    "report 4.4 and abstract",
    note="the report gives a complex-face gain only for VGG16 (about +10), so the general "
         "claim is the reference here")
VGG16_COMPLEX_ONE_HOT = Claim((55.0, 55.0), "VGG16 trained on 1-hot reaches only about 55% on "
                              "complex faces", "report 4.5")
OTHERS_COMPLEX_ONE_HOT = Claim((65.0, 70.0), "RAN, DAN and MTEN trained on 1-hot keep 65% to "
                               "70% on complex faces", "report 4.5")


def _model(model: str) -> str:
    return model.strip().lower()


def gain_claim(model: str, split: str) -> Claim | None:
    """The claim an N-hot vs 1-hot gain of ``model`` on ``split`` is measured against;
    None for splits the study did not test (e.g. ``official``)."""
    if split == "ordinary":
        return ORDINARY_GAIN
    if split == "complex":
        return VGG16_COMPLEX_GAIN if _model(model) == "vgg16" else GENERAL_GAIN_ON_COMPLEX
    return None


def one_hot_level_claim(model: str, split: str) -> Claim | None:
    """The study's 1-hot accuracy for ``model`` on ``split`` (complex faces, study models
    only); None where the report gives none."""
    if split != "complex":
        return None
    model = _model(model)
    if model == "vgg16":
        return VGG16_COMPLEX_ONE_HOT
    return OTHERS_COMPLEX_ONE_HOT if model in STUDY_MODELS else None


def _points(value: float) -> float:
    return round(100 * value, 2)


def sign_verdict(gain: GainSummary) -> str:
    """"gain confirmed" / "N-hot worse, confirmed" / "no gain confirmed" from the 95% interval, or
    why there is no interval."""
    if gain.ci is None:
        if gain.n_seeds < 3:
            return f"no interval ({gain.n_seeds} paired seeds; 3 are needed): not an answer yet"
        return "every paired difference is the same: no interval"
    low, high = (_points(bound) for bound in gain.ci)
    if low > 0:
        return "gain confirmed (the 95% interval excludes 0)"
    if high < 0:
        return "N-hot worse, confirmed (the 95% interval lies below 0)"
    return "no gain confirmed (the 95% interval includes 0)"


def claim_verdict(gain: GainSummary, claim: Claim) -> str | None:
    """The interval against ``claim``'s band (points): "consistent with", "rules out" or
    "above"; None without an interval."""
    if gain.ci is None:
        return None
    low, high = (_points(bound) for bound in gain.ci)
    claim_low, claim_high = claim.band
    if high < claim_low:
        return f"rules out the study's claim ({claim.band_text} points)"
    if low <= claim_high:
        return f"consistent with the study's claim ({claim.band_text} points)"
    return f"above the study's claimed band ({claim.band_text} points)"


def verdict(gain: GainSummary, claim: Claim | None = None) -> str:
    """The whole verdict of one gain: the sign, then (with a claim) the claim's verdict."""
    parts = [sign_verdict(gain)]
    against = None if claim is None else claim_verdict(gain, claim)
    if against:
        parts.append(against)
    return "; ".join(parts)


def level_verdict(mean: float, half_width: float | None, claim: Claim) -> str:
    """An accuracy level (fractions: mean and 95% half-width over seeds) against ``claim``'s
    band (percent): "consistent with", "below" or "above" the study's figure."""
    low = _points(mean - (half_width or 0.0))
    high = _points(mean + (half_width or 0.0))
    claim_low, claim_high = claim.band
    figure = f"{claim.band_text.lstrip('+').replace(' to +', '-')}%"
    where = "the 95% interval" if half_width is not None else "the single seed"
    if high < claim_low:
        return f"{where} lies below the study's {figure}"
    if low > claim_high:
        return f"{where} lies above the study's {figure}"
    return f"consistent with the study's {figure}"
