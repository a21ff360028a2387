"""Segmentation through the whole flow on real crops: 2D PNG (ISBI EM) and 3D NIfTI (BraTS, 2 channels)."""
from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
from helpers import shrink_plan, write_brats_cases, write_isbi_pairs
from PIL import Image as PILImage

from medsight import api


def test_2d_png_masks_keep_format_and_shape_and_volumes_csv(tmp_path, shared_data):
    src = write_isbi_pairs(tmp_path / "em", shared_data)
    ds = tmp_path / "ds"
    m = api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=2, progress=False)
    assert m.task == "segmentation" and m.labels["1"]
    shrink_plan(ds, epochs=2)
    run = api.train(ds, fold=0, quiet=True)
    out = api.predict(run, [src / "images"], tmp_path / "out", quiet=True)
    mask = np.asarray(PILImage.open(out / "em_00.png"))
    assert mask.shape == (96, 104) and set(np.unique(mask)) <= {0, 1}
    with open(out / "volumes.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["case"] for r in rows} == {f"em_{i:02d}" for i in range(4)}
    assert all(int(r["voxels"]) == int((np.asarray(PILImage.open(out / f"{r['case']}.png")) == 1).sum()) for r in rows)
    metrics = api.evaluate(out, ds, quiet=True)
    assert 0.0 <= metrics["mean_dice"] <= 1.0 and metrics["num_cases"] == 4
    # a folder of reference masks named like the predictions (values as in the predictions) works too
    refs = tmp_path / "refs"
    refs.mkdir()
    for i in range(4):
        lab = np.asarray(PILImage.open(src / f"labels/em_{i:02d}.png"))
        PILImage.fromarray((lab == 0).astype(np.uint8)).save(refs / f"em_{i:02d}.png")
    again = api.evaluate(out, refs, output=tmp_path / "m2.json", quiet=True)
    assert again["num_cases"] == 4
    assert abs(again["mean_dice"] - metrics["mean_dice"]) < 1e-9


def test_3d_nifti_two_channels_keeps_affine(tmp_path, shared_data):
    src = write_brats_cases(tmp_path / "brats", shared_data)
    ds = tmp_path / "ds"
    m = api.import_dataset(src, ds, format="cases", n_folds=3, progress=False)
    assert m.dims == 3 and len(m.channels) == 2
    shrink_plan(ds, epochs=1)
    run = api.train(ds, fold=0, quiet=True)
    case_dir = sorted(src.iterdir())[0]
    out = api.predict(run, [ds], tmp_path / "out", quiet=True)
    pred = nib.load(out / f"{m.cases[0].id}.nii.gz")
    ref = nib.load(case_dir / "OTMultiClass.nii.gz")
    assert pred.shape == ref.shape
    np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-4)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 3, 4}
    with open(out / "volumes.csv") as f:
        assert "volume_ml" in next(csv.DictReader(f))


def test_nnunet_layout_groups_channel_files_and_strips_the_suffix(tmp_path, shared_data):
    import json
    import shutil

    src = write_brats_cases(tmp_path / "brats", shared_data)
    raw = tmp_path / "Dataset001_Brats"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    for case in sorted(src.iterdir()):
        shutil.copy(case / "Flair_subtrMeanDivStd.nii.gz", raw / f"imagesTr/{case.name}_0000.nii.gz")
        shutil.copy(case / "T1c_subtrMeanDivStd.nii.gz", raw / f"imagesTr/{case.name}_0001.nii.gz")
        shutil.copy(case / "OTMultiClass.nii.gz", raw / f"labelsTr/{case.name}.nii.gz")
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "FLAIR", "1": "T1c"}, "file_ending": ".nii.gz", "numTraining": 3,
        "labels": {"background": 0, "necrosis": 1, "oedema": 2, "non_enhancing": 3, "enhancing": 4}}))
    ds = tmp_path / "ds"
    m = api.import_dataset(raw, ds, n_folds=3, progress=False)
    assert m.strip_channel_suffix and len(m.channels) == 2
    shrink_plan(ds, epochs=1)
    run = api.train(ds, fold=0, quiet=True)
    out = api.predict(run, [raw / "imagesTr"], tmp_path / "out", quiet=True)
    names = sorted(p.name for p in out.glob("*.nii.gz"))
    assert names == sorted(f"{c.name}.nii.gz" for c in src.iterdir())


def test_radiographs_without_spacing_are_predicted_at_the_scale_they_were_trained(tmp_path, shared_data):
    """PNG chest X-rays (a canonical view, no pixel size): the plan scales every image to the training field of
    view, and a smaller radiograph's mask comes back on its own grid."""
    folder = shared_data / "shenzhen_cxr" / "inputs"
    src = tmp_path / "cxr"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    for i in range(1, 7):
        name = f"CHNCXR_{i:04d}_0"
        PILImage.open(folder / f"train_images/{name}.png").resize((96, 96), PILImage.BILINEAR).save(src / f"images/{name}.png")
        lung = np.asarray(PILImage.open(folder / f"train_masks/{name}_mask.png").resize((96, 96), PILImage.BILINEAR))
        PILImage.fromarray(np.where(lung >= 128, 255, 0).astype(np.uint8)).save(src / f"labels/{name}.png")
    small = tmp_path / "small"
    small.mkdir()
    PILImage.open(src / "images/CHNCXR_0001_0.png").resize((48, 40), PILImage.BILINEAR).save(small / "cxr_small.png")
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:0,255:1", n_folds=2, progress=False)
    plan = shrink_plan(ds, epochs=1)
    assert plan["field_of_view_shape"] == [96, 96]
    run = api.train(ds, fold=0, quiet=True)
    out = api.predict(run, [small, src / "images"], tmp_path / "out", quiet=True)
    assert np.asarray(PILImage.open(out / "cxr_small.png")).shape == (40, 48)
    assert np.asarray(PILImage.open(out / "CHNCXR_0001_0.png")).shape == (96, 96)
