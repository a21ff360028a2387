"""Attention MIL: tiling and tile truth by hand, permutation invariance, the CLI on real BCCD images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight import api
from medsight.classification.mil import AttentionMIL, localisation_metrics, tile_image, tile_truth
from medsight.cli import main
from medsight.errors import InputError


def test_tiles_are_row_major_blocks():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    tiles, grid = tile_image(image, downsample=1, tile=2)
    assert grid == (2, 2) and tiles.shape == (4, 1, 2, 2)
    assert np.array_equal(tiles[1, 0], image[0, :2, 2:]) and np.array_equal(tiles[2, 0], image[0, 2:, :2])


def test_tile_truth_marks_tiles_holding_box_centres():
    boxes = [{"box": [10, 10, 20, 20], "label": 1}, {"box": [100, 40, 120, 60], "label": 1},
             {"box": [0, 0, 30, 30], "label": 2}]
    # downsample 2, tile 16: centres (15, 15) -> (7.5, 7.5) tile (0, 0); (110, 50) -> (55, 25) tile (1, 3)
    truth = tile_truth(boxes, 1, grid=(3, 4), downsample=2, tile=16)
    assert np.flatnonzero(truth).tolist() == [0, 1 * 4 + 3]


def test_attention_mil_is_permutation_invariant_and_scores_sum_to_one():
    torch.manual_seed(0)
    model = AttentionMIL(3, features=(4, 8)).eval()
    x = torch.randn(2, 6, 3, 16, 16)
    perm = torch.randperm(6)
    with torch.no_grad():
        scores = model.instance_scores(x)
        assert torch.allclose(scores.sum(1), torch.ones(2), atol=1e-6)
        assert torch.allclose(model(x[:, perm]), model(x), atol=1e-5)
        assert torch.allclose(model.instance_scores(x[:, perm]), scores[:, perm], atol=1e-6)


def test_localisation_metrics_hand_computed():
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    truth = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    labels = np.array([1, 1, 0])
    m = localisation_metrics(scores, truth, labels)
    assert m["top_tile_hit_rate"] == 0.5 and m["top_tile_chance_rate"] == pytest.approx(1 / 3)
    # positives 0.7 and 0.1 against negatives 0.2, 0.1, 0.3, 0.6: wins 4 + 0.5 of 8
    assert m["instance_auc"] == pytest.approx(4.5 / 8)


def _voc_subset(shared_data: Path, folder: Path, n_train: int = 10, n_val: int = 6) -> Path:
    bccd = shared_data / "bccd"
    train = (bccd / "splits/train.txt").read_text().split()[:n_train]
    val = (bccd / "splits/val.txt").read_text().split()[:n_val]
    for sub in ("Annotations", "JPEGImages", "splits"):
        (folder / sub).mkdir(parents=True)
    for name in train + val:
        (folder / "Annotations" / f"{name}.xml").symlink_to(bccd / "Annotations" / f"{name}.xml")
        (folder / "JPEGImages" / f"{name}.jpg").symlink_to(bccd / "JPEGImages" / f"{name}.jpg")
    (folder / "splits/train.txt").write_text("\n".join(train))
    (folder / "splits/val.txt").write_text("\n".join(val))
    return folder


@pytest.mark.parametrize("encoder", ["imagenet", "scratch"])
def test_mil_cli_on_bccd_images(shared_data, tmp_path, capsys, monkeypatch, encoder):
    ds = tmp_path / "ds"
    api.import_dataset(_voc_subset(shared_data, tmp_path / "voc"), ds, format="voc", progress=False)
    out = tmp_path / "mil"
    assert main(["mil", str(ds), "--positive-class", "Platelets", "-o", str(out), "--epochs", "1",
                 "--downsample", "4", "--threads", "1", "--encoder", encoder]) == 0
    result = json.loads((out / "mil.json").read_text())
    assert result["train_bags"] == 10 and result["val_bags"] == 6 and result["encoder"] == encoder
    assert result["tiles_per_bag"] == (480 // 4 // 32) * (640 // 4 // 32)  # 3 x 5 tiles
    assert result["bag_auc"] is None or 0 <= result["bag_auc"] <= 1
    saved = np.load(out / "instance_scores.npz")
    assert saved["attention"].shape == (6, 15) and np.allclose(saved["attention"].sum(1), 1, atol=1e-5)
    assert "MIL 'Platelets'" in capsys.readouterr().out
    if encoder == "imagenet":  # the tile features are kept with the dataset and reused: no second extraction
        import medsight.classification.mil as mil

        assert len(list((ds / "cache" / "mil_features").glob("tiles_*.npy"))) == 1
        monkeypatch.setattr(mil, "tile_features", lambda *a, **k: pytest.fail("features extracted again"))
        again = tmp_path / "mil_again"
        assert main(["mil", str(ds), "--positive-class", "Platelets", "-o", str(again), "--epochs", "1",
                     "--downsample", "4", "--threads", "1", "--encoder", encoder]) == 0
        assert np.allclose(np.load(again / "instance_scores.npz")["bag_probability"], saved["bag_probability"])
    assert main(["mil", str(ds), "--positive-class", "Neutrophil", "-o", str(out)]) == 2
    assert f"{ds}: no class 'Neutrophil'" in capsys.readouterr().err


def test_imagenet_tile_features_see_the_tile_content():
    """Frozen features: one vector per tile, identical tiles give identical vectors, different ones differ;
    a feature-vector bag trains and scores like a tile bag."""
    from medsight.classification.mil import tile_features, train_mil

    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (2, 3, 3, 16, 16)).astype(np.float32)
    tiles[1, 2] = tiles[0, 0]
    feats = tile_features(tiles, side=64)
    assert feats.shape[:2] == (2, 3) and feats.shape[2] > 1000 and feats.dtype == np.float32
    assert np.allclose(feats[1, 2], feats[0, 0], atol=1e-4) and not np.allclose(feats[0, 0], feats[0, 1], atol=1e-2)
    with pytest.raises(InputError, match="RGB"):
        tile_features(tiles[:, :, :1])
    model = train_mil(feats, np.array([0, 1]), epochs=2, batch_size=2)
    scores = model.instance_scores(torch.from_numpy(feats))
    assert scores.shape == (2, 3) and torch.allclose(scores.sum(1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("downsample, tile", [(0, 32), (2, 0), (-1, 32)])
def test_sizes_below_one_are_refused_before_any_work(tmp_path, downsample, tile):
    from medsight.classification.mil import run_mil

    with pytest.raises(InputError, match="downsample and tile must be at least 1"):
        run_mil(tmp_path / "never_read", tmp_path / "out", "Platelets", downsample=downsample, tile=tile)
    assert not (tmp_path / "out").exists()


def test_a_dataset_without_boxes_says_so(shared_data, tmp_path, capsys):
    voc = _voc_subset(shared_data, tmp_path / "voc", n_train=3, n_val=2)
    for xml in (voc / "Annotations").glob("*.xml"):
        xml.unlink()  # images with no annotation at all: every one a negative
    ds = tmp_path / "ds"
    api.import_dataset(voc, ds, format="voc", progress=False)
    out = tmp_path / "mil"
    assert main(["mil", str(ds), "--positive-class", "WBC", "-o", str(out), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{ds}: the dataset has no boxes, so no classes at all" in err[0]  # the folder given
    assert "use one of" not in err[0] and not out.exists()
