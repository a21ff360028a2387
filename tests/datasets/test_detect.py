"""Format auto-detection over the real data sets, and the refusals when nothing fits."""
from __future__ import annotations

from pathlib import Path

import pytest

from medsight.datasets import FORMATS, detect_format, import_dataset
from medsight.errors import InputError


@pytest.mark.parametrize("folder,expected", [
    ("drive", "pairs"), ("drive/training", "pairs"), ("isbi2012_em", "pairs"), ("shenzhen_cxr", "pairs"),
    ("brats_examples", "cases"), ("isic_uda1", "folder-json"), ("bccd", "voc"),
    ("medmnist/breastmnist.npz", "medmnist"), ("medmnist/adrenalmnist3d_64.npz", "medmnist")])
def test_real_sets_are_recognised(shared_data: Path, folder: str, expected: str):
    assert detect_format(shared_data / folder) == expected


def test_empty_folder(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: the folder is empty"):
        import_dataset(tmp_path / "empty", tmp_path / "ds", progress=False)


def test_unknown_layout_lists_what_was_looked_for(tmp_path: Path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("nothing to see")
    with pytest.raises(InputError) as err:
        detect_format(tmp_path / "src")
    message = str(err.value)
    assert "cannot tell the dataset format" in message and "\n" not in message
    assert all(f"{name}:" in message for name in FORMATS)


def test_missing_source_and_unknown_format_name(tmp_path: Path, shared_data: Path):
    with pytest.raises(InputError, match="nowhere: does not exist"):
        import_dataset(tmp_path / "nowhere", tmp_path / "ds", progress=False)
    with pytest.raises(InputError, match="unknown format 'nifti-zoo'"):
        import_dataset(shared_data / "bccd", tmp_path / "ds", format="nifti-zoo", progress=False)
    assert not (tmp_path / "ds").exists()
