"""Size a network to the time budget: the widest of a ladder of widths that still trains enough epochs.

The rule: time one training step of each candidate on this machine (narrowest first), turn it into the
epochs the budget allows over the training set, and keep the widest candidate that reaches
``min_epochs``. Below that, a wider network sees too few passes over a small data set to beat a narrower
one trained to convergence (measured on BreastMNIST and AdrenalMNIST3D, see NOTES.md).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache

import torch

from medsight.planning.budget import widest_that_fits  # noqa: F401  (the rule, shared with segmentation)
from medsight.training.optim import adamw

#: ResNet widths per stage, narrowest first; the last is the standard ResNet-18 width
WIDTH_LADDER: tuple[tuple[int, ...], ...] = ((8, 16, 32, 64), (16, 32, 64, 128), (32, 64, 128, 256),
                                             (64, 128, 256, 512))
#: stream widths of the 2.5D orthogonal-planes network, narrowest first
PLANES_LADDER: tuple[tuple[int, ...], ...] = ((16, 32, 64), (32, 64, 128), (64, 128, 256))


def time_training_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 2,
                       channels_last: bool = False, warmup: int = 1) -> float:
    """Fastest of ``repeats`` timed AdamW steps of ``model`` on the batch ``(x, y)`` (after ``warmup`` steps).

    The minimum, as ``timeit`` takes it: noise (another process, a slow first call) only adds time. A plan timed
    while another job shared the cores still buys less than it should (RetinaMNIST: one ensemble member
    instead of five); plan on an idle machine.
    """
    if channels_last and x.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    optimizer = adamw(model.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + warmup):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return min(times)


def _timed_per_sample(model: torch.nn.Module, channels: int, size: Sequence[int], batch: int, device: str,
                      channels_last: bool = False) -> float:
    """Training seconds per sample of ``model`` on a random two-class batch (fastest of three steps)."""
    x = torch.randn(batch, channels, *size, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    return time_training_step(model.to(device), x, y, repeats=3, channels_last=channels_last) / batch


@lru_cache(maxsize=64)
def _seconds_per_sample(key: tuple, device: str, threads: int) -> float:
    from medsight.classification.networks import small_resnet

    nd, channels, size, widths, stem_stride, batch = key
    torch.manual_seed(0)
    model = small_resnet(nd, channels, 2, widths=widths, stem_stride=stem_stride)
    return _timed_per_sample(model, channels, size, batch, device, channels_last=nd == 2 and device == "cpu")


@lru_cache(maxsize=64)
def _planes_seconds_per_sample(key: tuple, device: str, threads: int) -> float:
    from medsight.classification.exam_networks import orthogonal_planes

    channels, size, features, batch = key
    torch.manual_seed(0)
    return _timed_per_sample(orthogonal_planes(channels, 2, features=features), channels, size, batch, device)


def planes_seconds_per_sample(channels: int, size: Sequence[int], features: Sequence[int], device: torch.device,
                              batch: int = 32) -> float:
    """Training seconds per volume of an ``orthogonal_planes`` network (measured once per process and threads)."""
    key = (int(channels), tuple(int(s) for s in size), tuple(int(f) for f in features), int(batch))
    return _planes_seconds_per_sample(key, str(device), torch.get_num_threads())


def seconds_per_sample(spatial_dims: int, channels: int, size: Sequence[int], widths: Sequence[int],
                       stem_stride: int, device: torch.device, batch: int = 32) -> float:
    """Training seconds per image of a ``small_resnet`` on ``device`` (measured once per process and threads)."""
    key = (spatial_dims, channels, tuple(int(s) for s in size), tuple(widths), int(stem_stride), int(batch))
    return _seconds_per_sample(key, str(device), torch.get_num_threads())
