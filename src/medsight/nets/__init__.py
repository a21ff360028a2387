"""Network builders: U-Net (nnU-Net's), ResNet and EfficientNet-Lite0 encoders, multi-stream, MIL pooling.

Build any of them by name with :func:`create_model`; :func:`list_models` lists the names.
"""
from medsight.nets.efficientnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLite0,
    efficientnet_lite0,
    imagenet_normalize,
)
from medsight.nets.multistream import MultiStreamNet
from medsight.nets.pooling import AttentionMILPooling
from medsight.nets.registry import create_model, list_models, register_model
from medsight.nets.resnet import ResNet
from medsight.nets.unet import UNet, plan_unet, unet_divisor
import medsight.nets.centernet  # noqa: E402,F401  (registers "centernet"; imported after the registry to avoid a cycle)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AttentionMILPooling",
    "EfficientNetLite0",
    "MultiStreamNet",
    "ResNet",
    "UNet",
    "create_model",
    "efficientnet_lite0",
    "imagenet_normalize",
    "list_models",
    "plan_unet",
    "register_model",
    "unet_divisor",
]
