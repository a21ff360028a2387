"""Lesion classification at points: patch geometry by hand, VOC boxes to points, the CLI on real BCCD images."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medsight.classification.lesions import (
    as_planes,
    multiscale_patches,
    per_class_report,
    points_from_voc,
    read_points_csv,
)
from medsight.cli import main
from medsight.errors import InputError


def test_patches_are_cut_around_the_point_and_padded_with_zeros():
    image = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    p = multiscale_patches(image, (5, 5), scales=[4], patch=4)
    assert p.shape == (1, 1, 4, 4)
    assert np.array_equal(p[0, 0], image[0, 3:7, 3:7])  # rows 3..6, columns 3..6 around (5, 5)
    corner = multiscale_patches(image, (0, 0), scales=[4], patch=4)[0, 0]
    assert np.array_equal(corner[2:, 2:], image[0, :2, :2]) and corner[:2].sum() == 0 and corner[:, :2].sum() == 0
    two = multiscale_patches(image, (5, 5), scales=[2, 8], patch=4)
    assert two.shape == (2, 1, 4, 4)
    # the 2-pixel patch upsampled to 4 keeps its mean; the 8-pixel one downsampled keeps the region's mean
    assert two[0, 0].mean() == pytest.approx(image[0, 4:6, 4:6].mean(), abs=1e-4)
    assert two[1, 0].mean() == pytest.approx(image[0, 1:9, 1:9].mean(), abs=1e-3)


def test_volume_patches_and_their_orthogonal_planes():
    vol = np.zeros((1, 9, 9, 9), dtype=np.float32)
    vol[0, 4, 4, :] = 1.0  # a line along the last axis through the point
    cubes = multiscale_patches(vol, (4, 4, 4), scales=[5], patch=5)
    assert cubes.shape == (1, 1, 5, 5, 5) and cubes.sum() == 5
    planes = as_planes(cubes)
    assert planes.shape == (3, 1, 5, 5)
    assert [float(p.sum()) for p in planes] == [5.0, 5.0, 1.0]  # the line lies in two planes, crosses the third


def test_per_class_report_hand_computed():
    y = np.array([0, 0, 1, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 0, 2]]
    r = per_class_report(y, probs, ["a", "b", "c"])
    assert r["per_class_accuracy"] == {"a": 0.5, "b": pytest.approx(2 / 3), "c": 1.0}
    assert r["accuracy"] == pytest.approx(4 / 6) and r["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)


def test_voc_boxes_become_points_and_degenerate_boxes_are_skipped(shared_data, tmp_path):
    bccd = shared_data / "bccd"
    out = points_from_voc(bccd / "Annotations", bccd / "JPEGImages", tmp_path / "points.csv",
                          {"train": bccd / "splits/train.txt", "val": bccd / "splits/val.txt"})
    points = read_points_csv(out)
    n_objects = sum((bccd / "Annotations" / f).read_text().count("<object>") for f in
                    [p.name for p in (bccd / "Annotations").glob("*.xml")])
    assert len(points.labels) == n_objects - 2  # BCCD's two zero-width/height boxes
    assert set(points.labels) == {"RBC", "WBC", "Platelets"} and set(points.splits) == {"train", "val"}
    with open(out, newline="") as f:
        first = next(csv.DictReader(f))
    assert first["image"].endswith("BloodImage_00000.jpg")
    # the first box of image 0 is the WBC 260..491 x 177..376: its centre
    assert (first["label"], float(first["x"]), float(first["y"])) == ("WBC", 375.5, 276.5)


def test_lesions_cli_single_and_multi_scale(shared_data, tmp_path, capsys, monkeypatch):
    bccd = shared_data / "bccd"
    all_points = points_from_voc(bccd / "Annotations", bccd / "JPEGImages", tmp_path / "all.csv")
    with open(all_points, newline="") as f:
        rows = list(csv.DictReader(f))
    images = sorted({r["image"] for r in rows})[:8]
    keep = [dict(r, split="val" if r["image"] in images[6:] else "train") for r in rows if r["image"] in images]
    small = tmp_path / "small.csv"
    with open(small, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "x", "y", "label", "split"])
        w.writeheader()
        w.writerows(keep)
    out = tmp_path / "out"
    assert main(["lesions", str(small), "-o", str(out), "--scales", "16", "32", "64", "--patch", "16",
                 "--epochs", "1", "--threads", "1"]) == 0
    result = json.loads((out / "lesions.json").read_text())
    assert result["single_scale"]["streams"] == 1 and result["multi_scale"]["streams"] == 3
    assert result["val_points"] == sum(r["split"] == "val" for r in keep)
    for name in ("single_scale", "multi_scale"):
        assert 0 <= result[name]["accuracy"] <= 1
    with open(out / "predictions.csv", newline="") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == result["val_points"]
    assert "multi_scale: accuracy" in capsys.readouterr().out
    # a run started again with the same points and settings keeps the finished models: nothing is trained
    import medsight.classification.lesions as lesions

    assert len(list((out / "parts").glob("*/*_scale.json"))) == 2
    next((out / "parts").glob("*/multi_scale.json")).unlink()  # as if the run was cut before it finished
    trained = []
    real = lesions.train_streams
    monkeypatch.setattr(lesions, "train_streams", lambda x, *a, **k: trained.append(x.shape[1]) or real(x, *a, **k))
    again = lesions.classify_lesions(small, out, scales=(16, 32, 64), patch=16, epochs=1, quiet=True)
    assert trained == [3]  # the single-scale model was kept, only the multi-scale one trained again
    assert again["single_scale"] == result["single_scale"]
    assert again["multi_scale"]["accuracy"] == result["multi_scale"]["accuracy"]
    with open(out / "predictions.csv", newline="") as f:
        assert list(csv.DictReader(f)) == preds


def test_points_csv_errors_name_the_file(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text("image,x,label\na.png,1,RBC\n")
    with pytest.raises(InputError, match="lacks the column"):
        read_points_csv(bad)
    bad.write_text("image,x,y,label\nmissing.png,1,2,RBC\n")
    with pytest.raises(InputError, match="does not exist"):
        read_points_csv(bad)


def _points_csv(tmp_path, shared_data, bad_row: str):
    """A points CSV of two real BCCD points and one bad one (line 4), images named relative to the CSV."""
    (tmp_path / "JPEGImages").symlink_to(shared_data / "bccd" / "JPEGImages")
    csv_path = tmp_path / "points.csv"
    csv_path.write_text("image,x,y,label\nJPEGImages/BloodImage_00000.jpg,376,276,WBC\n"
                        f"JPEGImages/BloodImage_00001.jpg,131,386,RBC\n{bad_row}\n")
    return csv_path


@pytest.mark.parametrize("bad_row", ["JPEGImages/BloodImage_00000.jpg,nan,100,RBC",
                                     "JPEGImages/BloodImage_00000.jpg,100,inf,RBC"])
def test_a_nan_or_infinite_point_names_the_csv_line_and_image(shared_data, tmp_path, bad_row):
    csv_path = _points_csv(tmp_path, shared_data, bad_row)
    with pytest.raises(InputError, match="line 4: the point in .*BloodImage_00000.jpg has a NaN") as e:
        read_points_csv(csv_path)
    assert e.value.path == str(csv_path)


@pytest.mark.parametrize("x, y", [(5000, 100), (-3, 100), (100, 480)])
def test_a_point_outside_its_image_is_refused_and_nothing_written(shared_data, tmp_path, x, y):
    from medsight.classification.lesions import classify_lesions

    csv_path = _points_csv(tmp_path, shared_data, f"JPEGImages/BloodImage_00000.jpg,{x},{y},RBC")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"line 4: the point .* lies outside the image .*BloodImage_00000.jpg "
                                         r"\(640 x 480 pixels\)") as e:
        classify_lesions(csv_path, out, scales=(16,), patch=16, epochs=1, quiet=True)
    assert e.value.path == str(csv_path) and not out.exists()


def test_a_jpeg_given_as_the_points_csv_is_refused(shared_data):
    jpeg = shared_data / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    with pytest.raises(InputError, match="is not a CSV text file") as e:
        read_points_csv(jpeg)
    assert e.value.path == str(jpeg)


@pytest.mark.parametrize("scales, patch", [((0, 32), 16), ((16, -4), 16), ((16,), 0), ((), 16)])
def test_patch_sides_below_one_pixel_are_refused_before_any_work(tmp_path, scales, patch):
    from medsight.classification.lesions import classify_lesions

    with pytest.raises(InputError, match="at least 1 pixel"):
        classify_lesions(tmp_path / "never_read.csv", tmp_path / "out", scales=scales, patch=patch)
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_a_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    assert main(["lesions", str(tmp_path / "p.csv"), "-o", str(taken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"medsight: error: {taken}: is a file, not a folder (give a folder for the outputs with -o)"]
    assert taken.read_text() == "keep me"
