"""The ten loss functions (fer_bench.training.losses)."""

from __future__ import annotations

import pytest
import torch

from fer_bench.training.losses import LOSSES, draw_one_hot, get_loss

TEN = ["mse", "pld", "logcosh", "cosine", "cce", "mae", "kld", "hinge", "msle", "poisson"]


def _targets(batch: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    votes = torch.randint(0, 6, (batch, 8), generator=generator).float()
    votes[:, 0] += 1   # every row has at least one vote
    return votes / votes.sum(dim=1, keepdim=True)


def test_the_ten_losses_are_registered():
    # and Microsoft's FERPlus multi-target loss (tests/test_literature_training.py)
    assert sorted(LOSSES) == sorted([*TEN, "ms_multitarget"])


@pytest.mark.parametrize("name", TEN)
def test_finite_scalar_and_gradient_flows(name):
    logits = torch.randn(16, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss = get_loss(name)(logits, _targets())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TEN)
def test_loss_is_lower_near_the_target_than_far_from_it(name):
    targets = _targets()
    near = torch.log(targets + 1e-6)          # softmax(near) ~ targets
    far = torch.log(targets.flip(dims=[1]) + 1e-6)
    loss = get_loss(name)
    assert float(loss(near, targets)) < float(loss(far, targets))


@pytest.mark.parametrize("name", ["mse", "mae", "logcosh", "kld", "msle"])
def test_zero_at_the_target(name):
    targets = _targets()
    assert float(get_loss(name)(torch.log(targets + 1e-9), targets)) == pytest.approx(0.0, abs=1e-6)


def test_cosine_reaches_minus_one_and_cce_reaches_entropy():
    targets = _targets()
    logits = torch.log(targets + 1e-9)
    assert float(get_loss("cosine")(logits, targets)) == pytest.approx(-1.0, abs=1e-5)
    entropy = float(-(torch.xlogy(targets, targets)).sum(dim=1).mean())
    assert float(get_loss("cce")(logits, targets)) == pytest.approx(entropy, abs=1e-5)


def test_hinge_on_one_hot_is_zero_with_a_confident_right_answer():
    targets = torch.eye(8)
    confident = targets * 30.0
    assert float(get_loss("hinge")(confident, targets)) == pytest.approx(0.0, abs=1e-6)
    # Keras categorical hinge: max(0, 1 + max neg - pos) -> 1 for a uniform prediction
    assert float(get_loss("hinge")(torch.zeros(8, 8), targets)) == pytest.approx(1.0, abs=1e-6)


def test_mse_matches_definition_and_computes_in_float32_for_bf16_logits():
    targets = _targets()
    logits = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    expected = ((torch.softmax(logits, 1) - targets) ** 2).mean()
    assert torch.allclose(get_loss("mse")(logits, targets), expected)
    assert get_loss("mse")(logits.bfloat16(), targets).dtype == torch.float32


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'l2'.*mse.*poisson"):
        get_loss("l2")


def test_pld_draws_one_hot_from_the_distribution_seeded():
    targets = torch.tensor([[0.7, 0.3] + [0.0] * 6] * 4000)
    drawn = draw_one_hot(targets, torch.Generator().manual_seed(0))
    again = draw_one_hot(targets, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)
    assert torch.equal(drawn.sum(dim=1), torch.ones(4000))
    assert drawn[:, 2:].sum() == 0                      # never an emotion with no share
    assert abs(float(drawn[:, 0].mean()) - 0.7) < 0.03
    assert get_loss("pld").draws_targets and not get_loss("cce").draws_targets
