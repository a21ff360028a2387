"""Attention MIL pooling: weights sum to 1 over valid instances, masks, a hand-checked uniform case."""
from __future__ import annotations

import pytest
import torch

from medsight.nets import AttentionMILPooling


@pytest.mark.parametrize("gated", [True, False])
def test_weights_sum_to_one_over_valid_instances(gated):
    torch.manual_seed(0)
    pool = AttentionMILPooling(6, hidden=5, gated=gated)
    x = torch.randn(3, 4, 6)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 1, 0]], dtype=torch.bool)
    pooled, weights = pool(x, mask)
    assert pooled.shape == (3, 6) and weights.shape == (3, 4)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert float(weights[~mask].abs().sum()) == 0.0
    torch.testing.assert_close(pooled[2], x[2, 2])  # one valid instance: it is the bag
    torch.testing.assert_close(pooled, torch.einsum("bn,bnf->bf", weights, x))


def test_masked_instances_do_not_change_the_result():
    torch.manual_seed(1)
    pool = AttentionMILPooling(4, hidden=3)
    x = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    changed = x.clone()
    changed[0, 2] = 1e3
    torch.testing.assert_close(pool(x, mask)[0], pool(changed, mask)[0])


def test_constant_scores_give_the_mean_of_valid_instances():
    pool = AttentionMILPooling(2, hidden=3)
    with torch.no_grad():
        pool.score.weight.zero_()  # every instance scores the same
    x = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    pooled, weights = pool(x, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(weights, torch.tensor([[0.5, 0.5, 0.0]]))
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 4.0]]))


def test_empty_bag_pools_to_zeros_and_gradients_flow():
    pool = AttentionMILPooling(4, hidden=3)
    x = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    pooled, weights = pool(x, mask)
    assert torch.isfinite(pooled).all() and float(pooled[1].abs().sum()) == 0.0
    pooled.sum().backward()
    assert torch.isfinite(x.grad).all() and pool.score.weight.grad.abs().sum() > 0
    assert float(x.grad[0, 1].abs().sum()) == 0.0  # a masked instance gets no gradient


def test_shape_errors():
    pool = AttentionMILPooling(4)
    with pytest.raises(ValueError, match=r"\(B, N, F\)"):
        pool(torch.randn(3, 4))
    with pytest.raises(ValueError, match="mask"):
        pool(torch.randn(1, 3, 4), torch.ones(1, 2, dtype=torch.bool))
