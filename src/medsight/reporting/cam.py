"""Class-activation maps (Grad-CAM) of medsight classifiers, and CAM -> points/boxes for weak localisation.

Grad-CAM (Selvaraju et al. 2017) weights the channels of the last convolutional stage by the spatial mean
of the class score's gradient and keeps the positive part: ``relu(sum_k mean(dS/dA_k) * A_k)``, upsampled
to the input. The stage read is ``encoder.layer4`` of a :class:`medsight.nets.resnet.ResNet` (and
``small_resnet``), the activated 1x1 head convolution of EfficientNet-Lite0 (the maps it pools), else the
last convolution of the network. A :class:`MemberEnsemble` or a list of fold models gives the sum of its
members' maps, each for the same class. The 2.5D network (three orthogonal planes through the volume's
centre, one 2D stream each) gets each stream's 2D map on its plane, back-projected into the volume:
``cam[z, y, x] = axial[y, x] + coronal[z, x] + sagittal[z, y]``, so the peak is where the views agree.

Boxes follow :mod:`medsight.evaluation.detection`: continuous corners, 2D ``x0, y0, x1, y1`` with x = column,
3D ``x0, y0, z0, x1, y1, z1`` along the array axes, so a CAM box can be scored against manifest boxes.

>>> import torch
>>> from medsight.nets.resnet import ResNet
>>> net = ResNet(spatial_dims=2, in_channels=1, num_classes=2, layers=(1, 1, 1, 1), widths=(4, 8, 8, 16))
>>> grad_cam(net, torch.randn(1, 28, 28), target=1).shape
(28, 28)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

__all__ = ["cam_boxes", "cam_peak", "grad_cam", "predicted_class", "target_layer"]


def target_layer(model: nn.Module) -> nn.Module:
    """The module whose output Grad-CAM reads: the last convolutional stage of ``model``."""
    from medsight.nets.efficientnet import EfficientNetLite0
    from medsight.nets.resnet import ResNet

    if isinstance(model, ResNet):
        return model.encoder.layer4
    if isinstance(model, EfficientNetLite0):
        return model.backbone._swish  # its last call activates the 1x1 head convolution (the pooled features)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution to take a class-activation map from")
    return convs[-1]


def _leaves(models: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    """Single networks of a model, a list of fold models, or ensembles of members (flattened)."""
    from medsight.classification.networks import MemberEnsemble

    todo = list(models) if isinstance(models, (list, tuple)) else [models]
    out: list[nn.Module] = []
    for m in todo:
        out.extend(_leaves(list(m.members)) if isinstance(m, MemberEnsemble) else [m])
    return out


@torch.no_grad()
def predicted_class(models: nn.Module | Sequence[nn.Module], x: torch.Tensor | np.ndarray) -> int:
    """Index of the class with the highest mean softmax over the (flattened) models for one image (C, *s)."""
    leaves = _leaves(models)
    device = next(leaves[0].parameters()).device
    xb = _single(x, device)
    states = [m.training for m in leaves]
    try:
        probs = torch.stack([torch.softmax(m.eval()(xb).float(), 1) for m in leaves]).mean(0)
    finally:
        for m, s in zip(leaves, states):
            m.train(s)
    return int(probs[0].argmax())


def _single(x: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """One image (C, *spatial) as a float batch (1, C, *spatial) on ``device``."""
    t = torch.as_tensor(x, dtype=torch.float32)
    return t.unsqueeze(0).to(device)


def grad_cam(models: nn.Module | Sequence[nn.Module], x: torch.Tensor | np.ndarray, target: int | None = None,
             layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM of one image ``x`` (C, *spatial) for class index ``target`` (default: the predicted class).

    Returns a float32 map of the image's spatial shape, scaled to [0, 1] (all zeros when no location
    raises the class score). ``models`` is a network, an ensemble or a list of them; ``layer`` overrides
    :func:`target_layer` for a single network.
    """
    leaves = _leaves(models)
    device = next(leaves[0].parameters()).device
    xb = _single(x, device)
    spatial = tuple(xb.shape[2:])
    if target is None:
        target = predicted_class(leaves, x)
    total = torch.zeros(spatial, dtype=torch.float32)
    for m in leaves:
        total += _one_cam(m, xb, int(target), layer if len(leaves) == 1 else None)
    peak = float(total.max())
    return (total / peak if peak > 0 else total).numpy().astype(np.float32)


def _one_cam(model: nn.Module, xb: torch.Tensor, target: int, layer: nn.Module | None) -> torch.Tensor:
    """Un-normalised Grad-CAM of one network, upsampled to the input's spatial shape."""
    from medsight.classification.exam_networks import OrthogonalPlanesNet

    if isinstance(model, OrthogonalPlanesNet) and layer is None:
        return _planes_cam(model, xb, target)
    layer = layer if layer is not None else target_layer(model)
    act, grad = _activation_and_gradient(model, xb, target, [layer])[0]
    if act.dim() != xb.dim():
        raise ValueError(f"the target layer gives {act.dim() - 2}D maps for a {xb.dim() - 2}D input")
    return _weighted_map(act, grad, tuple(xb.shape[2:]))


def _activation_and_gradient(model: nn.Module, xb: torch.Tensor, target: int,
                             layers: Sequence[nn.Module]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(activation, gradient of the class score) of each layer for the batch of one ``xb``, model in eval mode."""
    captured: dict[int, torch.Tensor] = {}
    handles = [layer.register_forward_hook(lambda _m, _i, out, i=i: captured.__setitem__(i, out))
               for i, layer in enumerate(layers)]  # a module run more than once (EfficientNet's activation): its last call
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            inp = xb.detach().clone().requires_grad_(True)  # gives the activations a graph when weights are frozen
            logits = model(inp)
            if len(captured) != len(layers):
                raise ValueError("the target layer was not run by the network's forward pass")
            acts = [captured[i] for i in range(len(layers))]
            grads = torch.autograd.grad(logits[0, target], acts)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return list(zip(acts, grads))


def _weighted_map(act: torch.Tensor, grad: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``relu(sum_k mean(grad_k) * act_k)`` of one image, resized to ``size``."""
    weights = grad.mean(dim=tuple(range(2, act.dim())), keepdim=True)
    cam = torch.relu((weights * act).sum(dim=1, keepdim=True)).detach().float()
    mode = "bilinear" if cam.dim() == 4 else "trilinear"
    return F.interpolate(cam, size=size, mode=mode, align_corners=False)[0, 0].cpu()


def _planes_cam(model: nn.Module, xb: torch.Tensor, target: int) -> torch.Tensor:
    """The 2.5D network's three plane maps back-projected into the volume (D, H, W)."""
    from monai.networks.blocks import Convolution

    # each stream's last conv-norm-activation block (activated maps, as ResNet's layer4 is read)
    layers = [[m for m in e.children() if isinstance(m, Convolution)][-1] for e in model.streams.encoders]
    d, h, w = xb.shape[2:]
    axial, coronal, sagittal = (_weighted_map(a, g, size) for (a, g), size in
                                zip(_activation_and_gradient(model, xb, target, layers), ((h, w), (d, w), (d, h))))
    return axial[None, :, :] + coronal[:, None, :] + sagittal[:, :, None]


def cam_peak(cam: np.ndarray) -> tuple[int, ...]:
    """Array index of the CAM's maximum (a point for point-supervised or weak localisation)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(cam)), cam.shape))


def cam_boxes(cam: np.ndarray, fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around the connected regions where ``cam >= fraction * max``, with their peak CAM as score.

    Returns ``(boxes (N, 2 nd), scores (N,))``, best first, in :mod:`medsight.evaluation.detection`'s box
    convention (2D: x = column, y = row; 3D: array axes); empty when the map is all zeros.
    """
    cam = np.asarray(cam, dtype=np.float32)
    nd = cam.ndim
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0:
        return np.zeros((0, 2 * nd)), np.zeros(0)
    labels, n = ndimage.label(cam >= fraction * peak)
    boxes, scores = [], []
    for index, sl in enumerate(ndimage.find_objects(labels), start=1):
        lo = [s.start for s in sl]
        hi = [s.stop for s in sl]
        if nd == 2:  # array (row, column) -> (x = column, y = row)
            lo, hi = lo[::-1], hi[::-1]
        boxes.append([*lo, *hi])
        scores.append(float(cam[sl][labels[sl] == index].max()))
    order = np.argsort(-np.asarray(scores), kind="stable")
    return np.asarray(boxes, float)[order], np.asarray(scores, float)[order]
