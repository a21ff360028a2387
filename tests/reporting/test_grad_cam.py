"""Grad-CAM (medsight.reporting.cam): a trained network's map peaks on the evidence; shapes for every family."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.classification.networks import EnsembleLoss, MemberEnsemble, small_resnet
from medsight.nets.efficientnet import efficientnet_lite0
from medsight.nets.resnet import ResNet
from medsight.reporting.cam import cam_boxes, cam_peak, grad_cam, predicted_class, target_layer

SIZE, SQUARE = 32, 8


def _squares(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Noise images; class 1 holds a bright 8x8 square at a random place (its corner returned)."""
    x = rng.normal(0, 0.3, (n, 1, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n)
    corners = []
    for i in range(n):
        r, c = (int(v) for v in rng.integers(0, SIZE - SQUARE, 2))
        corners.append((r, c))
        if y[i]:
            x[i, 0, r:r + SQUARE, c:c + SQUARE] += 1.5
    return torch.from_numpy(x), torch.from_numpy(y), corners



@pytest.fixture(scope="module")
def square_finder() -> MemberEnsemble:
    """A two-member small ResNet ensemble trained (60 Adam steps, ~3 s) to tell images with a square."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = small_resnet(2, 1, 2, layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), members=2)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    loss_fn = EnsembleLoss(torch.nn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    net.train()
    for _ in range(60):
        x, y, _ = _squares(rng, 32)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(before)
    return net.eval()


def test_cam_of_trained_network_peaks_on_the_square(square_finder):
    x, y, corners = _squares(np.random.default_rng(1), 16)
    positives = [i for i in range(16) if y[i]]
    assert len(positives) >= 5
    assert all(predicted_class(square_finder, x[i]) == 1 for i in positives)
    for i in positives:
        cam = grad_cam(square_finder, x[i], target=1)
        assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32
        assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        r, c = corners[i]
        inside = np.zeros_like(cam, bool)
        inside[r:r + SQUARE, c:c + SQUARE] = True
        assert cam[inside].mean() > 2 * cam[~inside].mean()  # the evidence, not the background, lights up
        pr, pc = cam_peak(cam)
        assert r - 3 <= pr < r + SQUARE + 3 and c - 3 <= pc < c + SQUARE + 3
        boxes, scores = cam_boxes(cam)  # weak localisation: the best box holds the square's centre (x = column)
        x0, y0, x1, y1 = boxes[0]
        assert x0 <= c + SQUARE / 2 <= x1 and y0 <= r + SQUARE / 2 <= y1 and scores[0] == pytest.approx(1.0)


def test_ensemble_cam_sums_its_members_and_restores_training_mode(square_finder):
    x, y, _ = _squares(np.random.default_rng(2), 8)
    x = x[int(np.flatnonzero(y.numpy())[0])][None]  # an image with a square
    members = list(square_finder.members)
    together = grad_cam(square_finder, x[0], target=1)
    single = [grad_cam(m, x[0], target=1) for m in members]
    assert together.std() > 0 and all(s.std() > 0 for s in single)
    assert np.corrcoef(together.ravel(), (single[0] + single[1]).ravel())[0, 1] > 0.9
    square_finder.train()
    grad_cam(square_finder, x[0], target=0)
    assert square_finder.training and all(m.training for m in members)
    square_finder.eval()


def test_cam_has_the_image_shape_for_efficientnet_3d_resnet_and_frozen_weights():
    torch.manual_seed(0)
    eff = efficientnet_lite0(in_channels=3, num_classes=3, pretrained=True).eval()  # ImageNet features, new head
    assert target_layer(eff) is eff.backbone._swish
    cam = grad_cam(eff, torch.randn(3, 64, 48))
    assert cam.shape == (64, 48) and cam.std() > 0
    net3d = ResNet(spatial_dims=3, in_channels=2, num_classes=2, layers=(1, 1, 1, 1), widths=(4, 4, 8, 8))
    for p in net3d.parameters():
        p.requires_grad_(False)  # frozen weights: the map must still come through the input's graph
    cam = grad_cam(net3d, np.random.default_rng(0).normal(size=(2, 16, 16, 12)).astype(np.float32), target=0)
    assert cam.shape == (16, 16, 12) and cam.std() > 0
    boxes, scores = cam_boxes(cam)
    assert boxes.shape[1] == 6 and len(scores) == len(boxes) >= 1


def test_cam_boxes_of_an_empty_map_are_empty():
    boxes, scores = cam_boxes(np.zeros((8, 8)))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_2_5d_cam_back_projects_the_plane_maps_onto_the_evidence():
    """A 2.5D network trained to see a bright block crossing the axial centre plane: the back-projected
    volume map is brighter on the block than off it (with the axial map transposed, two cases fail)."""
    from medsight.classification.exam_networks import orthogonal_planes

    side, block = 16, 5

    def volumes(rng, n):
        x = rng.normal(0, 0.3, (n, 1, side, side, side)).astype(np.float32)
        y = rng.integers(0, 2, n)
        corners = [tuple(int(v) for v in rng.integers(0, side - block, 2)) for _ in range(n)]
        for i, (r, c) in enumerate(corners):
            if y[i]:  # spans the axial centre plane (z = 8) at a random (row, column)
                x[i, 0, 6:11, r:r + block, c:c + block] += 1.5
        return torch.from_numpy(x), torch.from_numpy(y), corners

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = orthogonal_planes(1, 2, features=(4, 8, 8), hidden=16)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    rng = np.random.default_rng(0)
    net.train()
    for _ in range(60):
        x, y, _ = volumes(rng, 16)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(before)
    net.eval()
    x, y, corners = volumes(np.random.default_rng(1), 12)
    positives = [i for i in range(12) if y[i]]
    assert len(positives) >= 4
    for i in positives:
        cam = grad_cam(net, x[i], target=1)
        assert cam.shape == (side, side, side) and cam.max() == pytest.approx(1.0)
        r, c = corners[i]
        inside = np.zeros_like(cam, bool)
        inside[6:11, r:r + block, c:c + block] = True
        assert cam[inside].mean() > 1.4 * cam[~inside].mean()
