"""One registry and one ``create_model(name, **config)`` for every network (timm's habit).

>>> sorted(list_models())[:3]
['efficientnet_lite0', 'multistream', 'resnet10']
>>> net = create_model("resnet10", spatial_dims=3, in_channels=1, num_classes=2, widths=(8, 8, 16, 16))
>>> tuple(net(torch.zeros(1, 1, 16, 16, 16)).shape)
(1, 2)
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch  # noqa: F401  (the doctest uses it)
from torch import nn

from medsight.errors import InputError
from medsight.nets.efficientnet import efficientnet_lite0
from medsight.nets.multistream import MultiStreamNet
from medsight.nets.resnet import RESNET_LAYERS, ResNet
from medsight.nets.unet import UNet

__all__ = ["create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "efficientnet_lite0": efficientnet_lite0,
    "multistream": MultiStreamNet,
    **{name: partial(ResNet, layers=layers) for name, layers in RESNET_LAYERS.items()},
}

def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add a network builder under ``name`` (replacing one of the same name)."""
    _MODELS[name] = factory

def list_models() -> list[str]:
    """Names that :func:`create_model` accepts, sorted."""
    return sorted(_MODELS)

def create_model(name: str, **config) -> nn.Module:
    """Build the network registered under ``name`` with ``config`` as its keyword arguments."""
    try:
        factory = _MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}", fix=f"use one of {', '.join(list_models())}") from None
    return factory(**config)
