"""Post-processing decided on validation masks: largest component, small-component removal, or nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.tasks.postprocessing import (apply, decide, largest_component, largest_components, merge, pieces,
                                           remove_small_components)


def _lungs(shared_data, n=3) -> list[np.ndarray]:
    """Real two-lung masks (Shenzhen), a quarter of the size (128 x 128)."""
    folder = shared_data / "shenzhen_cxr" / "inputs" / "train_masks"
    files = sorted(folder.iterdir())[:n]
    return [np.asarray(PILImage.open(f).convert("L").resize((128, 128), PILImage.NEAREST)) > 127 for f in files]


def _with_blobs(mask: np.ndarray, seed: int) -> np.ndarray:
    """The mask plus four 3 x 3 stray blobs outside it."""
    out = mask.copy()
    rng = np.random.default_rng(seed)
    placed = 0
    while placed < 4:
        r, c = rng.integers(2, mask.shape[0] - 5, size=2)
        if not mask[r - 2:r + 5, c - 2:c + 5].any():
            out[r:r + 3, c:c + 3] = True
            placed += 1
    return out


def test_two_lungs_with_stray_blobs_get_small_components_removed(shared_data):
    refs = _lungs(shared_data)
    pairs = [(_with_blobs(r, i), r) for i, r in enumerate(refs)]
    # keeping the two largest components restores the lungs too, and wins the tie as the simpler rule
    assert decide(pairs, [0.25] * len(pairs))["rule"] == "largest_components"
    choice = decide(pairs, [0.25] * len(pairs), max_pieces=1)  # 0.5 mm pixels; no k-components rule
    # keeping the largest component would drop a lung; removing the blobs restores the reference exactly
    assert choice["rule"] == "min_size"
    assert choice["dice"]["largest_component"] < choice["dice"]["none"]
    blob_area, lung_area = 9 * 0.25, min(largest_component(r).sum() for r in refs) * 0.25
    assert blob_area < choice["min_size"] < lung_area
    for pred, ref in pairs:
        cleaned = remove_small_components(pred, choice["min_size"] / 0.25)
        assert not (cleaned & ~ref).any()  # every blob is gone
        assert (ref & ~cleaned).sum() <= 0.001 * ref.sum()  # the lungs stay (a resized mask's specks may go)


def _with_large_blob(mask: np.ndarray) -> np.ndarray:
    """The mask plus a stray blob in a bottom corner (as a network paints the abdomen), larger than every
    size fraction tried."""
    from scipy import ndimage

    out = mask.copy()
    blob = np.zeros_like(mask)
    blob[-24:-1, -24:-1] = True
    assert not (blob & ndimage.binary_dilation(mask, iterations=2)).any()  # clear of the lungs
    out[blob] = True
    return out


def test_two_lungs_with_a_large_stray_blob_keep_the_two_largest_components(shared_data):
    refs = [largest_components(r, 2) for r in _lungs(shared_data)]  # two pieces each, specks aside
    assert [pieces(r) for r in refs] == [2, 2, 2]
    pairs = [(_with_large_blob(r), r) for r in refs]
    blob = (pairs[0][0] & ~refs[0]).sum()
    assert blob > 0.1 * refs[0].sum()  # too large for the size rule
    choice = decide(pairs, [1.0] * len(pairs))
    assert choice["rule"] == "largest_components" and choice["components"] == 2
    assert choice["dice"]["largest_2_components"] == 1.0 > choice["dice"]["none"]
    assert choice["dice"]["largest_component"] < choice["dice"]["none"]  # one lung would go
    label = pairs[0][0].astype(np.int16)
    out = apply(label, {"1": [1]}, {"largest_components": {"1": choice["components"]}}, 1.0,
                lambda lab, values: np.isin(lab, values))
    np.testing.assert_array_equal(out > 0, refs[0])


def test_one_organ_with_a_blob_keeps_the_largest_component(shared_data):
    refs = [largest_component(r) for r in _lungs(shared_data)]  # one lung each
    pairs = [(_with_blobs(r, 10 + i), r) for i, r in enumerate(refs)]
    choice = decide(pairs, [1.0] * len(pairs))
    assert choice["rule"] == "largest_component"  # the simpler rule wins a tie with the size rule


def test_a_fragmented_structure_is_left_alone(shared_data):
    vessels = np.asarray(PILImage.open(shared_data / "drive" / "training" / "1st_manual" / "21_manual1.gif")) > 127
    pred = vessels.copy()
    pred[:, :40] = False  # the prediction misses a strip; it has no extra blobs to remove
    choice = decide([(pred, vessels)], [1.0])
    assert choice["rule"] == "none" and choice["min_size"] is None


def test_apply_uses_physical_sizes_and_merge_keeps_what_all_folds_chose():
    label = np.zeros((10, 10), np.int16)
    label[0:4, 0:4] = 1   # 16 voxels
    label[8:10, 8:10] = 1  # 4 voxels
    mask_of = lambda lab, values: np.isin(lab, values)  # noqa: E731
    # 10 mm^2 at 2 mm^2 a pixel = 5 pixels: the 4-pixel component goes
    out = apply(label.copy(), {"1": [1]}, {"min_component_size": {"1": 10.0}}, 2.0, mask_of)
    assert out.sum() == 16 and out[9, 9] == 0
    # at 4 mm^2 a pixel the same 10 mm^2 is 2.5 pixels: both stay
    assert apply(label.copy(), {"1": [1]}, {"min_component_size": {"1": 10.0}}, 4.0, mask_of).sum() == 20
    # decisions.json turns the label-value keys into strings; the rules must still find their structure
    saved = json.loads(json.dumps({"largest_component": [], "min_component_size": {1: 10.0}}))
    assert apply(label.copy(), {1: [1]}, saved, 2.0, mask_of).sum() == 16
    assert apply(label.copy(), {1: [1]}, json.loads(json.dumps({"largest_component": [1]})), 1.0, mask_of).sum() == 16
    merged = merge([{"largest_component": ["a"], "min_component_size": {"b": 5.0, "c": 1.0}},
                    {"largest_component": ["a", "c"], "min_component_size": {"b": 3.0}}])
    assert merged == {"largest_components": {"a": 1}, "min_component_size": {"b": 3.0}}
    # a fold saved before the k-components rule (a list) merges with one that keeps two pieces: the most kept
    assert merge([{"largest_component": ["a"]}, {"largest_components": {"a": 2}}])["largest_components"] == {"a": 2}


@pytest.mark.parametrize("fractions", [(0.5,)])
def test_a_size_that_removes_real_structure_is_refused(shared_data, fractions):
    refs = _lungs(shared_data)
    pairs = [(r, r) for r in refs]  # perfect predictions: half the median size would delete lungs
    choice = decide(pairs, [1.0] * len(pairs), fractions=fractions)
    assert choice["rule"] == "none"


def test_predict_applies_the_saved_size_rule(shared_data, tmp_path):
    """decisions.json's size rule reaches the written masks (through JSON, fold merging and the original grid)."""
    from helpers import shrink_plan, write_isbi_pairs
    from medsight import api

    src = write_isbi_pairs(tmp_path / "em", shared_data, n=4, size=64)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=2, progress=False)
    shrink_plan(ds, epochs=1)
    run = api.train(ds, fold=0, quiet=True, threads=1)
    decisions_file = run / "fold_0" / "decisions.json"
    kept = api.predict(run, [src / "images"], tmp_path / "kept", quiet=True, threads=1)
    before = {p.name: np.asarray(PILImage.open(p)) for p in kept.glob("*.png")}
    assert any(m.any() for m in before.values())
    decisions = json.loads(decisions_file.read_text())
    decisions.update({"largest_component": [], "min_component_size": {"1": 1e9}})  # larger than any component
    decisions_file.write_text(json.dumps(decisions))
    removed = api.predict(run, [src / "images"], tmp_path / "removed", quiet=True, threads=1)
    assert all(not np.asarray(PILImage.open(removed / name)).any() for name in before)


def test_post_processing_is_decided_on_masks_predicted_as_predict_will(monkeypatch):
    """The validation cases are predicted with the plan's test-time mirroring: a blob that only the mirrored
    prediction paints must be seen by the decision that is meant to remove it."""
    from medsight.tasks.segmentation import SegmentationTask

    lungs = np.zeros((1, 64, 64), np.int16)
    lungs[0, 10:50, 8:24] = 1
    lungs[0, 10:50, 40:56] = 1
    blob = lungs.copy()
    blob[0, 54:64, 54:64] = 1  # painted only when mirrored

    class Cases:
        ids = ["a", "b"]

        def __len__(self):
            return 2

        def image(self, cid, mmap=True):
            return np.zeros((1, 64, 64), np.float32)

        def label(self, cid):
            return lungs

        def eval_mask(self, cid):
            return None

        def props(self, cid):
            return {"spacing": [1.0, 1.0], "original_shape": [64, 64], "cropped_shape": [64, 64],
                    "network_shape": [64, 64]}

    monkeypatch.setattr(SegmentationTask, "_label_map",
                        lambda self, model, array, plan, device, mirror: (blob if mirror else lungs)[0])
    plan = {"labels": {"0": "background", "1": "lung"}, "regions": None, "inference": {"mirror_axes": [1]}}
    decisions = SegmentationTask().finalize(None, Cases(), plan, None, None)
    assert decisions["largest_components"] == {1: 2}
