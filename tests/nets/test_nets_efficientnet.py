"""EfficientNet-Lite0: ImageNet weights really loaded from the installed file, heads, pyramid, freezing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsight.errors import InputError
from medsight.nets import efficientnet_lite0, imagenet_normalize
from medsight.nets.efficientnet import pretrained_weights_path

MILITARY_UNIFORM = 652  # ImageNet class index


@pytest.fixture(scope="module")
def imagenet_net():
    return efficientnet_lite0(num_classes=1000, pretrained=True).eval()


@pytest.fixture(scope="module")
def on_disk():
    return torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)


def test_backbone_equals_the_state_dict_on_disk(on_disk):
    net = efficientnet_lite0(num_classes=2, pretrained=True)
    mine = net.backbone.state_dict()
    backbone_keys = [k for k in on_disk if not k.startswith("_fc.")]
    assert len(backbone_keys) > 250
    for key in backbone_keys:
        torch.testing.assert_close(mine[key], on_disk[key], rtol=0, atol=0, msg=key)
    random = efficientnet_lite0(num_classes=2, pretrained=False).backbone.state_dict()
    key = "_blocks.5._depthwise_conv.weight"
    assert not torch.allclose(random[key], on_disk[key])
    assert tuple(net.head.weight.shape) == (2, 1280)


def test_imagenet_head_kept_for_1000_classes(imagenet_net, on_disk):
    torch.testing.assert_close(imagenet_net.head.weight, on_disk["_fc.weight"], rtol=0, atol=0)


def test_recognises_a_real_photo(imagenet_net):
    """Grace Hopper in uniform (a photo matplotlib ships) is 'military uniform' with ImageNet normalisation."""
    from PIL import Image
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        probs = imagenet_net(imagenet_normalize(x)).softmax(1)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert float(probs[MILITARY_UNIFORM]) > 0.3


def test_features_logits_and_pyramid_shapes():
    net = efficientnet_lite0(num_classes=3, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert net.features(x).shape == (2, 1280)
        assert net(x).shape == (2, 3)
        maps = net.feature_maps(torch.randn(1, 3, 50, 70))
    # 'same' padding: each stride s gives ceil(size / s)
    assert [tuple(m.shape[1:]) for m in maps] == [
        (16, 25, 35), (24, 13, 18), (40, 7, 9), (112, 4, 5), (320, 2, 3)]
    assert [m.shape[1] for m in maps] == list(net.feature_channels)


def test_grey_input_reuses_the_rgb_stem(imagenet_net):
    grey_net = efficientnet_lite0(in_channels=1, num_classes=1000, pretrained=True).eval()
    grey = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey_net.features(grey), imagenet_net.features(grey.expand(-1, 3, -1, -1)),
                                   atol=1e-4, rtol=1e-4)
    assert efficientnet_lite0(in_channels=4, num_classes=2).backbone._conv_stem.weight.shape[1] == 4


def test_parameter_groups_partition_the_model():
    net = efficientnet_lite0(num_classes=2, pretrained=False)
    backbone, head = net.backbone_parameters(), net.head_parameters()
    ids = {id(p) for p in backbone} | {id(p) for p in head}
    assert len(ids) == len(backbone) + len(head) == len(list(net.parameters()))
    assert {id(p) for p in head} == {id(net.head.weight), id(net.head.bias)}


def test_freeze_backbone_for_gradual_unfreezing():
    net = efficientnet_lite0(num_classes=2, pretrained=False)
    units = net.backbone_units()
    net.freeze_backbone(2)
    trainable = [any(p.requires_grad for p in u.parameters()) for u in units]
    assert trainable == [False] * (len(units) - 2) + [True, True]
    net.train()
    assert not net.backbone._bn0.training and net.backbone._bn1.training  # frozen stem keeps its statistics
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert net.backbone._conv_stem.weight.grad is None and net.head.weight.grad is not None
    assert net.backbone._conv_head.weight.grad is not None

    net.freeze_backbone(0)
    assert not any(p.requires_grad for p in net.backbone_parameters())
    net.freeze_backbone(len(units))
    assert all(p.requires_grad for p in net.parameters())
    net.train()
    assert net.backbone._bn0.training


def test_3d_is_refused():
    with pytest.raises(InputError, match="2D network"):
        efficientnet_lite0(num_classes=2, spatial_dims=3)
