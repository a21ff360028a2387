"""create_model / list_models: every registered name builds a working network."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medsight.errors import InputError
from medsight.nets import EfficientNetLite0, MultiStreamNet, ResNet, UNet, create_model, list_models, register_model


def test_names():
    assert {"unet", "resnet10", "resnet18", "resnet34", "efficientnet_lite0", "multistream"} <= set(list_models())


def test_each_name_builds_its_network():
    unet = create_model("unet", spatial_dims=2, in_channels=1, out_channels=2, features=[4, 8],
                        strides=[[1, 1], [2, 2]], kernel_sizes=[[3, 3], [3, 3]])
    assert isinstance(unet, UNet)
    r34 = create_model("resnet34", spatial_dims=3, in_channels=1, num_classes=2, widths=(4, 4, 8, 8))
    assert isinstance(r34, ResNet) and [len(getattr(r34.encoder, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    r10 = create_model("resnet10", spatial_dims=2, in_channels=1, num_classes=2, widths=(4, 4, 8, 8))
    assert [len(getattr(r10.encoder, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    eff = create_model("efficientnet_lite0", spatial_dims=2, in_channels=3, num_classes=2, pretrained=False)
    assert isinstance(eff, EfficientNetLite0)
    ms = create_model("multistream", streams=2, spatial_dims=2, in_channels=1, num_classes=2, features=(4,))
    assert isinstance(ms, MultiStreamNet) and ms(torch.randn(1, 2, 1, 8, 8)).shape == (1, 2)


def test_unknown_name_and_registration(monkeypatch):
    from medsight.nets import registry

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # leave the real registry as it was
    with pytest.raises(InputError, match="unknown model 'resnet19'.*resnet18"):
        create_model("resnet19")
    register_model("tiny_test_net", lambda num_classes: nn.Linear(3, num_classes))
    assert "tiny_test_net" in list_models()
    assert create_model("tiny_test_net", num_classes=4).out_features == 4
