"""``medmnist`` importer: BreastMNIST, RetinaMNIST, AdrenalMNIST3D (28 and 64), references readable."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medsight.datasets import Manifest, detect_format, import_dataset
from medsight.errors import InputError
from medsight.io import read_image


def test_breastmnist(shared_data: Path, tmp_path: Path):
    src = shared_data / "medmnist" / "breastmnist.npz"
    assert detect_format(src) == "medmnist"
    m = import_dataset(src, tmp_path / "ds", progress=False)
    assert (m.name, m.task, m.dims, m.channels) == ("breastmnist", "classification", 2, ["grey"])
    assert m.labels == {"0": "malignant", "1": "normal, benign"} and not m.ordinal
    assert Counter(c.subset for c in m.cases) == {"train": 546, "val": 78}
    assert m.splits == [{"train": [c.id for c in m.cases[:546]], "val": [c.id for c in m.cases[546:]]}]
    with np.load(src) as data:
        images, labels = data["train_images"], data["train_labels"][:, 0]
    case = m.case_by_id["train_0017"]
    assert case.images == [f"{src}::train_images::17"] and case.label == int(labels[17])
    assert np.array_equal(read_image(case.images[0]).array[0], images[17])
    assert Counter(c.label for c in m.cases if c.subset == "train") == Counter(labels.tolist())


def test_retinamnist_rgb_ordinal(shared_data: Path, tmp_path: Path):
    src = shared_data / "medmnist" / "retinamnist.npz"
    m = import_dataset(src, tmp_path / "ds", progress=False)
    assert m.channels == ["R", "G", "B"] and m.modality == {"0": "RGB", "1": "RGB", "2": "RGB"}
    assert m.ordinal and m.label_values == [0, 1, 2, 3, 4]
    assert Counter(c.subset for c in m.cases) == {"train": 1080, "val": 120}
    with np.load(src) as data:
        sample = data["val_images"][5]
    assert np.array_equal(read_image(m.case_by_id["val_0005"].images[0]).array, np.moveaxis(sample, -1, 0))
    assert Manifest.load(tmp_path / "ds").ordinal


@pytest.mark.parametrize("name,side", [("adrenalmnist3d", 28), ("adrenalmnist3d_64", 64)])
def test_adrenalmnist3d(shared_data: Path, tmp_path: Path, name: str, side: int):
    m = import_dataset(shared_data / "medmnist" / f"{name}.npz", tmp_path / "ds", progress=False)
    assert (m.name, m.dims, m.channels) == ("adrenalmnist3d", 3, ["grey"])
    assert m.labels == {"0": "normal", "1": "hyperplasia"}
    assert Counter(c.subset for c in m.cases) == {"train": 1188, "val": 98}
    assert read_image(m.cases[-1].images[0]).spatial_shape == (side, side, side)


def test_test_subset_kept_out_of_the_splits(shared_data: Path, tmp_path: Path):
    with np.load(shared_data / "medmnist" / "breastmnist.npz") as data:
        parts = {k: data[k] for k in data.files}
    small = {"train_images": parts["train_images"][:30], "train_labels": parts["train_labels"][:30],
             "val_images": parts["val_images"][:10], "val_labels": parts["val_labels"][:10],
             "test_images": parts["train_images"][30:37], "test_labels": parts["train_labels"][30:37]}
    np.savez_compressed(tmp_path / "pneumoniamnist.npz", **small)
    m = import_dataset(tmp_path / "pneumoniamnist.npz", tmp_path / "ds", progress=False)
    assert Counter(c.subset for c in m.cases) == {"train": 30, "val": 10, "test": 7}
    assert len(m.splits) == 1 and len(m.splits[0]["train"]) == 30 and len(m.splits[0]["val"]) == 10
    assert not {c.id for c in m.cases if c.subset == "test"} & set(m.splits[0]["train"] + m.splits[0]["val"])
    assert m.labels["1"] == "pneumonia"


def test_npz_without_medmnist_keys(tmp_path: Path):
    np.savez(tmp_path / "other.npz", x=np.zeros((2, 4, 4)))
    with pytest.raises(InputError, match="other.npz: holds .*expected train_images"):
        import_dataset(tmp_path / "other.npz", tmp_path / "ds", format="medmnist", progress=False)


def _small_breast_parts(shared_data: Path) -> dict[str, np.ndarray]:
    """The first 20 train and 6 val samples of BreastMNIST, labels as (N, 1) like the real file."""
    with np.load(shared_data / "medmnist" / "breastmnist.npz") as data:
        return {"train_images": data["train_images"][:20], "train_labels": data["train_labels"][:20],
                "val_images": data["val_images"][:6], "val_labels": data["val_labels"][:6]}


@pytest.mark.parametrize("key,labels,named", [
    ("train_labels", np.array([["a"]] * 20), "train_labels holds text values such as 'a'"),
    ("train_labels", np.r_[[[1.0]], [[np.nan]], [[0.0]] * 18].astype(np.float32), r"train_labels\[1\] is nan"),
    ("val_labels", np.r_[[[1]] * 4, [[-1]], [[0]]], r"val_labels\[4\] is -1"),
    ("train_labels", np.r_[[[0.0]] * 7, [[1.5]], [[1.0]] * 12], r"train_labels\[7\] is 1.5"),
])
def test_labels_that_are_not_classes_are_refused(shared_data: Path, tmp_path: Path, key: str, labels: np.ndarray,
                                                 named: str):
    parts = _small_breast_parts(shared_data)
    parts[key] = labels
    np.savez(tmp_path / "bad.npz", **parts)
    with pytest.raises(InputError, match=rf"bad.npz: {named}"):
        import_dataset(tmp_path / "bad.npz", tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_split_without_images_is_refused(shared_data: Path, tmp_path: Path):
    parts = _small_breast_parts(shared_data)
    parts["train_images"], parts["train_labels"] = parts["train_images"][:0], parts["train_labels"][:0]
    np.savez(tmp_path / "empty_train.npz", **parts)
    with pytest.raises(InputError, match="empty_train.npz: train_images holds no images"):
        import_dataset(tmp_path / "empty_train.npz", tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_folds_asked_of_a_source_with_its_own_split_are_not_used_and_said_so(tmp_path: Path, caplog):
    from helpers import write_npz_subset

    src = write_npz_subset(tmp_path / "small.npz", n_train=24, n_val=8)
    m = import_dataset(src, tmp_path / "ds", n_folds=3, progress=False)
    assert len(m.splits) == 1 and len(m.splits[0]["val"]) == 8  # MedMNIST's own validation split
    assert "--folds 3 is not used: the source's own train/validation split" in caplog.text
    caplog.clear()
    import_dataset(src, tmp_path / "ds2", progress=False)
    assert "--folds" not in caplog.text
