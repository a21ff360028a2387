"""ResNet encoders in 2D and 3D: features, logits, stems, gradients."""
from __future__ import annotations

import pytest
import torch

from medsight.nets import ResNet, create_model

SMALL_WIDTHS = (8, 16, 32, 64)


@pytest.mark.parametrize("spatial_dims,size", [(2, 28), (3, 16)])
def test_features_and_logits_shapes(spatial_dims, size):
    net = ResNet(spatial_dims, in_channels=1, num_classes=5, layers=(1, 1, 1, 1), widths=SMALL_WIDTHS).eval()
    x = torch.randn(3, 1, *[size] * spatial_dims)
    with torch.no_grad():
        assert net.features(x).shape == (3, 64) and net.feature_dim == 64
        assert net(x).shape == (3, 5)


def test_small_stem_keeps_resolution_and_imagenet_stem_reduces_it():
    small = ResNet(2, 3, 2, layers=(1, 1, 1, 1), widths=SMALL_WIDTHS, stem="small")
    big = ResNet(2, 3, 2, layers=(1, 1, 1, 1), widths=SMALL_WIDTHS, stem="imagenet")
    assert small.encoder.conv1.stride == (1, 1) and small.encoder.conv1.kernel_size == (3, 3)
    assert small.encoder.no_max_pool
    assert big.encoder.conv1.stride == (2, 2) and big.encoder.conv1.kernel_size == (7, 7)
    assert not big.encoder.no_max_pool


def test_bottleneck_multiplies_the_feature_width():
    net = ResNet(2, 1, 2, block="bottleneck", layers=(1, 1, 1, 1), widths=SMALL_WIDTHS)
    assert net.feature_dim == 256
    assert net.features(torch.randn(2, 1, 28, 28)).shape == (2, 256)


def test_resnet18_depth_and_gradients():
    net = create_model("resnet18", spatial_dims=2, in_channels=1, num_classes=2, widths=SMALL_WIDTHS)
    assert [len(getattr(net.encoder, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    net(torch.randn(2, 1, 28, 28)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert len(net.backbone_parameters()) + len(net.head_parameters()) == len(list(net.parameters()))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="stem"):
        ResNet(2, 1, 2, stem="huge")
    with pytest.raises(ValueError, match="spatial_dims"):
        ResNet(1, 1, 2)
