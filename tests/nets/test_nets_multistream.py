"""Multi-stream net: one encoder per scale, (B, S, C, *patch) layout, fused logits."""
from __future__ import annotations

import pytest
import torch

from medsight.nets import MultiStreamNet


@pytest.mark.parametrize("spatial_dims,patch", [(2, (16, 16)), (3, (8, 8, 8))])
def test_shapes(spatial_dims, patch):
    net = MultiStreamNet(streams=3, spatial_dims=spatial_dims, in_channels=2, num_classes=4, features=(4, 8))
    x = torch.randn(5, 3, 2, *patch)
    assert net.features(x).shape == (5, 3 * 8) and net.feature_dim == 24
    assert net(x).shape == (5, 4)


def test_each_stream_sees_only_its_scale():
    torch.manual_seed(0)
    net = MultiStreamNet(streams=2, spatial_dims=2, in_channels=1, num_classes=2, features=(4, 8)).eval()
    x = torch.randn(2, 2, 1, 16, 16)
    changed = x.clone()
    changed[:, 1] = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        a, b = net.features(x), net.features(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # stream 0 untouched
    assert not torch.allclose(a[:, 8:], b[:, 8:])
    torch.testing.assert_close(a[:, :8], net.encoders[0](x[:, 0]))


def test_gradients_reach_every_stream():
    net = MultiStreamNet(streams=3, spatial_dims=2, in_channels=1, num_classes=2, features=(4,))
    net(torch.randn(4, 3, 1, 8, 8)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_wrong_layout_is_refused():
    net = MultiStreamNet(streams=3, spatial_dims=2, in_channels=1, num_classes=2, features=(4,))
    with pytest.raises(ValueError, match=r"\(B, 3, 1"):
        net(torch.randn(4, 1, 8, 8))
