"""Segmentation metrics against values computed by hand, including anisotropic spacing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medsight.errors import InputError
from medsight.evaluation.segmentation import segmentation_metrics, summarise, surface_voxels

ANISO = (2.0, 0.5)  # 2 mm between rows, 0.5 mm between columns
FG = {"fg": [1]}


def _metrics(pred, ref, spacing=ANISO, structures=FG, eval_mask=None):
    return segmentation_metrics(np.asarray(pred), np.asarray(ref), spacing, structures, eval_mask)


def test_overlap_and_volumes_exact():
    pred = np.zeros((4, 4), int)
    ref = np.zeros((4, 4), int)
    pred[0:2, 0:2] = 1  # 4 pixels
    ref[0:2, 1:3] = 1  # 4 pixels, 2 shared
    m = _metrics(pred, ref)["fg"]
    assert m["dice"] == pytest.approx(2 * 2 / 8)
    assert m["iou"] == pytest.approx(2 / 6)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5)
    assert m["volume_pred"] == pytest.approx(4 * 2.0 * 0.5)
    assert m["volume_ref"] == pytest.approx(4.0)
    assert not m["both_empty"] and not m["pred_empty"] and not m["ref_empty"]


@pytest.mark.parametrize(
    ("ref_pixel", "expected_mm"),
    [((3, 1), 2 * 2.0), ((1, 5), 4 * 0.5), ((2, 3), math.sqrt((1 * 2.0) ** 2 + (2 * 0.5) ** 2))],
)
def test_single_pixel_distance_uses_spacing(ref_pixel, expected_mm):
    pred = np.zeros((5, 6), int)
    ref = np.zeros((5, 6), int)
    pred[1, 1] = 1
    ref[ref_pixel] = 1
    m = _metrics(pred, ref)["fg"]
    assert m["hd95"] == pytest.approx(expected_mm)
    assert m["msd"] == pytest.approx(expected_mm)
    assert m["dice"] == 0.0


def test_hd95_and_msd_on_segments_by_hand():
    # pred: row 0, columns 0..3; ref: row 2, columns 0..1; spacing (2.0, 0.5)
    pred = np.zeros((3, 4), int)
    ref = np.zeros((3, 4), int)
    pred[0, :] = 1
    ref[2, 0:2] = 1
    pred_to_ref = [4.0, 4.0, math.sqrt(16 + 0.25), math.sqrt(16 + 1.0)]  # (0,2)->(2,1), (0,3)->(2,1)
    ref_to_pred = [4.0, 4.0]
    position = 0.95 * 3  # numpy's linear percentile over 4 sorted values
    directed_pred = pred_to_ref[2] + (position - 2) * (pred_to_ref[3] - pred_to_ref[2])
    m = _metrics(pred, ref)["fg"]
    assert m["hd95"] == pytest.approx(max(directed_pred, 4.0))
    assert m["msd"] == pytest.approx(sum(pred_to_ref + ref_to_pred) / 6)


def test_3d_anisotropic_distance():
    pred = np.zeros((3, 3, 5), int)
    ref = np.zeros((3, 3, 5), int)
    pred[1, 1, 0] = 1
    ref[1, 1, 2] = 1
    m = _metrics(pred, ref, spacing=(1.0, 1.0, 3.0))["fg"]
    assert m["hd95"] == pytest.approx(6.0)
    assert m["volume_ref"] == pytest.approx(3.0)


def test_surface_is_the_boundary_and_image_border_counts_as_outside():
    block = np.zeros((5, 5), bool)
    block[1:4, 1:4] = True
    surface = surface_voxels(block)
    assert surface.sum() == 8 and not surface[2, 2]
    full = np.ones((4, 4), bool)
    assert surface_voxels(full).sum() == 12  # the ring along the image border


def test_filled_shapes_distance_between_surfaces():
    # two 3x3 blocks, the prediction one column to the right: every surface point moves by 0.5 mm or less
    pred = np.zeros((7, 8), int)
    ref = np.zeros((7, 8), int)
    ref[2:5, 2:5] = 1
    pred[2:5, 3:6] = 1
    m = _metrics(pred, ref)["fg"]
    # pred surface (8 points): (2,3),(2,4),(4,3),(4,4) lie on the ref surface (0 mm); (2,5),(3,5),(4,5)
    # are one column from ref column 4, and (3,3) (ref interior) one column from (3,2): 0.5 mm each.
    # The reverse is the mirror image, so 4 of 8 points are 0.5 mm away in each direction.
    assert m["msd"] == pytest.approx(4 * 0.5 / 8)
    assert m["hd95"] == pytest.approx(0.5)
    assert m["dice"] == pytest.approx(2 * 6 / 18)


def test_both_empty_is_perfect_and_flagged():
    empty = np.zeros((4, 4), int)
    m = _metrics(empty, empty)["fg"]
    assert (m["dice"], m["iou"], m["hd95"], m["msd"]) == (1.0, 1.0, 0.0, 0.0)
    assert (m["sensitivity"], m["precision"]) == (1.0, 1.0)
    assert m["both_empty"] is True


@pytest.mark.parametrize("missing", ["pred", "ref"])
def test_one_empty_is_worst_case_never_nan(missing):
    full = np.zeros((4, 4), int)
    full[1:3, 1:3] = 1
    empty = np.zeros((4, 4), int)
    pred, ref = (empty, full) if missing == "pred" else (full, empty)
    m = _metrics(pred, ref)["fg"]
    diagonal = math.sqrt((4 * 2.0) ** 2 + (4 * 0.5) ** 2)
    assert m["dice"] == 0.0 and m["iou"] == 0.0
    assert m["hd95"] == pytest.approx(diagonal) and m["msd"] == pytest.approx(diagonal)
    assert m["sensitivity"] == 0.0 and m["precision"] == 0.0
    assert m[f"{missing}_empty"] is True and m["both_empty"] is False
    assert all(math.isfinite(v) for v in m.values())


def test_missing_more_makes_the_mean_worse():
    ref = np.zeros((6, 6), int)
    ref[2:4, 2:4] = 1
    near = np.roll(ref, 1, axis=1)
    missed = np.zeros_like(ref)
    hit_all = summarise([_metrics(near, ref), _metrics(near, ref)])
    miss_one = summarise([_metrics(near, ref), _metrics(missed, ref)])
    assert miss_one["fg"]["hd95"]["mean"] > hit_all["fg"]["hd95"]["mean"]
    assert miss_one["fg"]["dice"]["mean"] < hit_all["fg"]["dice"]["mean"]


def test_eval_mask_ignores_outside_for_overlap_and_surfaces():
    ref = np.zeros((4, 6), int)
    ref[1, :] = 1  # a vessel crossing the field of view edge
    pred = ref.copy()
    pred[1, 4:] = 0  # missed outside the field of view
    pred[3, 5] = 1  # false positive outside the field of view
    fov = np.zeros((4, 6), bool)
    fov[:, :4] = True
    masked = _metrics(pred, ref, eval_mask=fov)["fg"]
    assert masked["dice"] == 1.0 and masked["hd95"] == 0.0 and masked["msd"] == 0.0
    assert masked["volume_ref"] == pytest.approx(4 * 1.0)
    unmasked = _metrics(pred, ref)["fg"]
    assert unmasked["dice"] == pytest.approx(2 * 4 / (5 + 6))


def test_brats_regions_by_hand():
    ref = np.array([[0, 1, 2, 2], [3, 4, 4, 0]])
    pred = np.array([[0, 1, 2, 0], [2, 4, 0, 0]])
    regions = {"whole_tumour": [1, 2, 3, 4], "tumour_core": [1, 3, 4], "enhancing": [4]}
    m = segmentation_metrics(pred, ref, (1.0, 1.0), regions)
    # whole: ref 6 voxels, pred 4, all 4 inside ref -> dice 8/10
    assert m["whole_tumour"]["dice"] == pytest.approx(0.8)
    assert m["whole_tumour"]["precision"] == 1.0
    # core: ref {1,3,4,4} at (0,1),(1,0),(1,1),(1,2); pred {1,4} at (0,1),(1,1) -> dice 4/6
    assert m["tumour_core"]["dice"] == pytest.approx(4 / 6)
    # enhancing: ref (1,1),(1,2); pred (1,1) -> dice 2/3, sensitivity 1/2
    assert m["enhancing"]["dice"] == pytest.approx(2 / 3)
    assert m["enhancing"]["sensitivity"] == pytest.approx(0.5)


def test_summarise_statistics_and_flag_counts():
    empty = np.zeros((3, 3), int)
    one = empty.copy()
    one[1, 1] = 1
    cases = [_metrics(one, one, (1.0, 1.0)), _metrics(empty, one, (1.0, 1.0)), _metrics(empty, empty, (1.0, 1.0))]
    cases[0]["case"] = "ignored"
    summary = summarise(cases)
    dice = summary["fg"]["dice"]
    assert dice["mean"] == pytest.approx(2 / 3) and dice["median"] == 1.0
    assert dice["std"] == pytest.approx(np.std([1.0, 0.0, 1.0])) and dice["n"] == 3
    assert summary["fg"]["hd95"]["mean"] == pytest.approx(math.sqrt(18) / 3)
    assert summary["fg"]["both_empty"] == {"count": 1, "n": 3}
    assert "case" not in summary


def test_bad_inputs_raise_input_error():
    a = np.zeros((3, 3), int)
    with pytest.raises(InputError, match="shape"):
        segmentation_metrics(a, np.zeros((3, 4), int), (1, 1), FG)
    with pytest.raises(InputError, match="spacing"):
        segmentation_metrics(a, a, (1, 1, 1), FG)
    with pytest.raises(InputError, match="mask"):
        segmentation_metrics(a, a, (1, 1), FG, eval_mask=np.ones((2, 2), bool))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_drive_field_of_view_matches_monai_distances(shared_data):
    """Real DRIVE vessels with a one-column shift, scored inside the field of view, against MONAI."""
    from PIL import Image

    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    ref = np.array(Image.open(shared_data / "drive/training/1st_manual/21_manual1.gif")) > 0
    fov = np.array(Image.open(shared_data / "drive/training/mask/21_training_mask.gif")) > 0
    pred = np.roll(ref, 1, axis=1)
    pred[:40] = False  # a missed band, so the distances are not all equal
    spacing = (1.0, 0.7)
    vessel = {"vessel": [1]}
    m = segmentation_metrics(pred.astype(np.uint8), ref.astype(np.uint8), spacing, vessel, eval_mask=fov)["vessel"]
    pred_t = torch.from_numpy(pred & fov)[None, None].float()
    ref_t = torch.from_numpy(ref & fov)[None, None].float()
    hd95 = monai_metrics.compute_hausdorff_distance(pred_t, ref_t, percentile=95, spacing=spacing).item()
    msd = monai_metrics.compute_average_surface_distance(pred_t, ref_t, symmetric=True, spacing=spacing).item()
    assert m["hd95"] == pytest.approx(hd95, rel=1e-5)
    assert m["msd"] == pytest.approx(msd, rel=1e-5)
    tp = np.count_nonzero(pred & ref & fov)
    assert m["dice"] == pytest.approx(2 * tp / (np.count_nonzero(pred & fov) + np.count_nonzero(ref & fov)))
