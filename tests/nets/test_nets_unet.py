"""UNet (nnU-Net's plain U-Net) and plan_unet: shapes, deep supervision, anisotropy, ONNX, channels_last."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.nets import UNet, plan_unet, unet_divisor
from medsight.nets.unet import receptive_field


def small_unet_2d(deep_supervision: bool = False, **kw) -> UNet:
    return UNet(2, in_channels=1, out_channels=3, features=[4, 8, 16, 16],
                strides=[[1, 1], [2, 2], [2, 2], [2, 2]], kernel_sizes=[[3, 3]] * 4,
                deep_supervision=deep_supervision, **kw)


def test_2d_output_shape_and_eval_single_tensor():
    net = small_unet_2d(deep_supervision=True).eval()
    out = net(torch.randn(2, 1, 32, 24))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 32, 24)


def test_deep_supervision_list_in_train_mode():
    net = small_unet_2d(deep_supervision=True).train()
    outs = net(torch.randn(2, 1, 32, 32))
    # 4 stages -> decoder levels at 32, 16, 8; the lowest (8) has no head
    assert [tuple(o.shape) for o in outs] == [(2, 3, 32, 32), (2, 3, 16, 16)]
    assert len(net.heads) == 2


def test_without_deep_supervision_train_mode_gives_a_tensor():
    out = small_unet_2d(deep_supervision=False).train()(torch.randn(1, 1, 16, 16))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 16, 16)


def test_3d_anisotropic_strides_and_kernels():
    net = UNet(3, in_channels=2, out_channels=2, features=[4, 8, 16, 16],
               strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
               kernel_sizes=[[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]], deep_supervision=True).train()
    assert net.divisor == [4, 8, 8]
    outs = net(torch.randn(1, 2, 8, 16, 24))
    assert [tuple(o.shape) for o in outs] == [(1, 2, 8, 16, 24), (1, 2, 8, 8, 12)]
    first_conv = net.encoder[0].conv1.conv
    assert tuple(first_conv.kernel_size) == (1, 3, 3) and tuple(first_conv.padding) == (0, 1, 1)
    assert tuple(net.encoder[1].conv1.conv.stride) == (1, 2, 2)
    assert tuple(net.decoder[0].transp_conv.conv.stride) == (1, 2, 2)


def test_gradients_reach_every_parameter():
    net = small_unet_2d(deep_supervision=True).train()
    outs = net(torch.randn(2, 1, 16, 16))
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_input_size_must_fit_the_strides():
    with pytest.raises(ValueError, match="multiple of"):
        small_unet_2d()(torch.randn(1, 1, 30, 32))
    with pytest.raises(ValueError, match="strides\\[0\\]"):
        UNet(2, 1, 2, features=[4, 8], strides=[[2, 2], [2, 2]], kernel_sizes=[[3, 3]] * 2)


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    net = small_unet_2d().eval()
    x = torch.randn(2, 1, 32, 32)
    ref = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)

    net3 = UNet(3, 1, 2, features=[4, 8], strides=[[1, 1, 1], [2, 2, 2]], kernel_sizes=[[3, 3, 3]] * 2).eval()
    x3 = torch.randn(1, 1, 8, 8, 8)
    ref3 = net3(x3)
    out3 = net3.to(memory_format=torch.channels_last_3d)(x3.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out3, ref3, atol=1e-4, rtol=1e-4)


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = small_unet_2d(deep_supervision=True).eval()
    x = torch.randn(1, 1, 32, 32)
    path = tmp_path / "unet.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = torch.randn(2, 1, 32, 32)
    (onnx_out,) = session.run(None, {"image": x2.numpy()})
    with torch.no_grad():
        ref = net(x2).numpy()
    assert onnx_out.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(onnx_out, ref, atol=1e-4, rtol=0)


# -- plan_unet --------------------------------------------------------------------------------------
def test_plan_anisotropic_pools_in_plane_first():
    plan = plan_unet(patch_size=(160, 160, 32), spacing=(0.8, 0.8, 3.0))
    # spacing 3.0 > 2 x 0.8: first pooling in-plane only, kernel 1 along z at full resolution;
    # after it the spacing is (1.6, 1.6, 3.0), within 2x: all axes pool and get kernel 3
    assert plan["strides"][:3] == [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    assert plan["kernel_sizes"][:2] == [[3, 3, 1], [3, 3, 3]]
    # z: 32 -> 16 -> 8 -> 4 after three poolings, then only in-plane (10 -> 5); 5 < 8 stops
    assert plan["strides"][3:] == [[2, 2, 2], [2, 2, 2], [2, 2, 1]]
    assert plan["features"] == [32, 64, 128, 256, 320, 320]
    assert unet_divisor(plan["strides"]) == [32, 32, 8]


def test_plan_isotropic_2d_has_seven_stages():
    plan = plan_unet(patch_size=(512, 512), spacing=(1.0, 1.0))
    assert len(plan["strides"]) == len(plan["kernel_sizes"]) == len(plan["features"]) == 7
    assert plan["strides"] == [[1, 1]] + [[2, 2]] * 6
    assert plan["features"] == [32, 64, 128, 256, 512, 512, 512]  # 2D cap 512


def test_plan_stops_at_the_minimum_feature_map():
    # 64 -> 32 -> 16 -> 8 and 48 -> 24 -> 12 -> 6; then (8, 6): a lone axis needs >= 3 x 4 to pool again
    assert plan_unet(patch_size=(64, 48), spacing=(1.0, 1.0))["strides"] == [[1, 1]] + [[2, 2]] * 3
    # (64, 16) -> (32, 8) -> (16, 4) -> (8, 4): the last pooling is along the long axis alone
    assert plan_unet(patch_size=(64, 16), spacing=(1.0, 1.0))["strides"] == [[1, 1], [2, 2], [2, 2], [2, 1]]
    assert plan_unet(patch_size=(64, 64), spacing=(1, 1), min_feature_map=8)["strides"] == [[1, 1]] + [[2, 2]] * 3


def test_receptive_field_by_hand_and_by_probing_the_network():
    # 3 stages, kernels 3: encoder 1 +2 +2 | +2 +4 | +4 +8 = 23; decoder +2*2*2 +2*2*1 = 35
    strides, kernels = [[1, 1], [2, 2], [2, 2]], [[3, 3]] * 3
    assert receptive_field(strides, kernels) == [35, 35]
    # anisotropic kernel 1 along an axis widens nothing there: 1 + 0 | +0 +0 | ... and the decoder adds 0
    assert receptive_field([[1, 1], [2, 1]], [[3, 1], [3, 1]])[1] == 1
    # the network itself: the gradient of the centre output reaches exactly that many input pixels
    # batch norm in eval mode is pointwise (instance norm would couple every pixel through its statistics)
    net = UNet(2, 1, 1, features=[2, 2, 2], strides=strides, kernel_sizes=kernels, norm="batch").eval()
    x = torch.zeros(1, 1, 64, 64, requires_grad=True)
    net(x)[0, 0, 32, 32].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    assert int(rows.max() - rows.min() + 1) == 35  # the encoder alone would see 23


def test_receptive_field_of_a_stem_network_is_the_stem_times_its_blocks():
    strides, kernels = [[1, 1], [2, 2], [2, 2]], [[3, 3]] * 3
    assert receptive_field(strides, kernels, stem=[2, 2]) == [70, 70]
    assert receptive_field(strides, kernels, stem=[2, 1]) == [70, 35]
    net = UNet(2, 1, 1, features=[2, 2, 2], strides=strides, kernel_sizes=kernels, norm="batch",
               stem=[2, 2]).eval()
    extents = []
    for pos in (64, 65):  # either pixel of a block sees the same 35 blocks
        x = torch.zeros(1, 1, 128, 128, requires_grad=True)
        net(x)[0, 0, pos, pos].backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
        extents.append((int(rows.min()), int(rows.max() - rows.min() + 1)))
    assert extents[0] == extents[1] and extents[0][1] == 70


def test_one_convolution_decoder_sees_less_and_keeps_the_outputs():
    # 3 stages; the bottleneck sees 23 pixels (jump 4). One k3 convolution at level 1 joins 2 bottleneck
    # units (23 + 4 = 27); at level 0 it joins 2 level-1 units, which share their bottleneck units or not by
    # the position's parity: 27 or 23 + 2*4 = 31. Two convolutions a stage give 35 everywhere.
    strides, kernels = [[1, 1], [2, 2], [2, 2]], [[3, 3]] * 3
    extents = {}
    for convs in (1, 2):
        net = UNet(2, 1, 1, features=[2, 2, 2], strides=strides, kernel_sizes=kernels, norm="batch",
                   decoder_convs=convs).eval()
        extents[convs] = []
        for pos in range(28, 32):
            x = torch.zeros(1, 1, 64, 64, requires_grad=True)
            net(x)[0, 0, pos, pos].backward()
            rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
            extents[convs].append(int(rows.max() - rows.min() + 1))
    assert extents == {1: [27, 31, 31, 27], 2: [35, 35, 35, 35]}
    # the decoder loses each stage's second convolution and nothing else: deep supervision still works
    two = UNet(2, 1, 3, features=[4, 8, 16], strides=strides, kernel_sizes=kernels, deep_supervision=True)
    one = UNet(2, 1, 3, features=[4, 8, 16], strides=strides, kernel_sizes=kernels, deep_supervision=True,
               decoder_convs=1)
    dropped = sum(w * w * 9 + 2 * w for w in (4, 8))  # conv2 weights (no bias: norm follows) + norm2 affine
    conv2_bias = sum(p.numel() for n, p in two.named_parameters() if "conv_block.conv2.conv.bias" in n)
    assert sum(p.numel() for p in two.parameters()) - sum(p.numel() for p in one.parameters()) == \
        dropped + conv2_bias
    outputs = one.train()(torch.randn(2, 1, 32, 32))
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 32, 32)]
    with pytest.raises(ValueError, match="decoder_convs"):
        UNet(2, 1, 1, features=[2, 2], strides=strides[:2], kernel_sizes=kernels[:2], decoder_convs=3)


def test_plan_stops_once_the_receptive_field_covers_the_patch():
    full = plan_unet(patch_size=(256, 256), spacing=(1.0, 1.0), base_features=16)
    cut = plan_unet(patch_size=(256, 256), spacing=(1.0, 1.0), base_features=16, stop_at_patch=True)
    assert len(full["strides"]) == 7 and len(cut["strides"]) == 6
    # 5 stages see 155 < 256 pixels; 6 see 315 >= 256
    assert receptive_field(cut["strides"][:5], cut["kernel_sizes"][:5]) == [155, 155]
    assert receptive_field(cut["strides"], cut["kernel_sizes"]) == [315, 315]
    assert cut["features"] == full["features"][:6]


def test_planned_net_builds_and_runs():
    plan = plan_unet(patch_size=(16, 32, 32), spacing=(2.5, 1.0, 1.0), base_features=4)
    net = UNet(3, 1, 2, deep_supervision=True, **plan).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 16, 32, 32))
    assert out.shape == (1, 2, 16, 32, 32)
    assert plan["strides"][1] == [1, 2, 2]


# -- the space-to-depth stem -------------------------------------------------------------------------
def test_space_to_depth_folds_blocks_into_channels_and_back():
    from medsight.nets.unet import depth_to_space, space_to_depth

    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    folded = space_to_depth(x, (2, 3))
    assert folded.shape == (2, 3 * 6, 2, 2)
    # channel c * 6 + (dy * 3 + dx) of block (i, j) holds pixel (2i + dy, 3j + dx) of channel c
    assert folded[1, 2 * 6 + 1 * 3 + 2, 1, 0] == x[1, 2, 2 + 1, 0 + 2]
    assert torch.equal(depth_to_space(folded, (2, 3)), x)
    volume = torch.randn(1, 2, 4, 6, 8)
    assert torch.equal(depth_to_space(space_to_depth(volume, (1, 2, 2)), (1, 2, 2)), volume)


def test_stem_network_gives_every_pixel_its_own_logits():
    torch.manual_seed(0)
    net = small_unet_2d(deep_supervision=True, stem=[2, 2])
    assert net.divisor == [16, 16]
    outs = net.train()(torch.randn(2, 1, 32, 32))
    # full resolution first, then the deep-supervision level at the stem's resolution halved
    assert [tuple(o.shape) for o in outs] == [(2, 3, 32, 32), (2, 3, 8, 8)]
    net.eval()
    with torch.no_grad():
        logits = net(torch.randn(1, 1, 32, 32))
    # the four pixels of a 2 x 2 block come from different head channels, so they differ
    block = logits[0, 0, 10:12, 10:12].flatten()
    assert len(set(block.tolist())) == 4
    # nothing runs at full resolution: the first convolution reads the folded 4-channel input at half size
    assert net.encoder[0].conv1.conv.in_channels == 4
    with pytest.raises(ValueError, match="multiple of"):
        net(torch.randn(1, 1, 40, 40))
    with pytest.raises(ValueError, match="stem needs 2"):
        small_unet_2d(stem=[2, 2, 2])


def test_stem_network_learns_a_one_pixel_pattern():
    """A checkerboard of single pixels is only learnable if the unfolded logits keep per-pixel detail."""
    torch.manual_seed(0)
    net = small_unet_2d(stem=[2, 2])
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    target = ((yy + xx) % 2).long()[None]
    image = target[:, None].float() + 0.1 * torch.randn(1, 1, 32, 32)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(net(image), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (net(image).argmax(1) == target).float().mean() > 0.99


def test_stem_network_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = small_unet_2d(deep_supervision=True, stem=[2, 2]).eval()
    path = tmp_path / "stem.onnx"
    torch.onnx.export(net, (torch.randn(1, 1, 32, 32),), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    x = torch.randn(2, 1, 32, 32)
    (onnx_out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, net(x).numpy(), atol=1e-4, rtol=0)
