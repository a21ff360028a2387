"""``cases`` importer: one folder per case (BraTS examples), patterns guessed or given."""
from __future__ import annotations

from pathlib import Path

import pytest

from medsight.datasets import detect_format, import_dataset
from medsight.errors import InputError

FLAIR, T1C, LABEL, BRAIN = ("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz",
                            "brainmask.nii.gz")


def test_brats_cases_guessed_patterns(shared_data: Path, tmp_path: Path):
    src = shared_data / "brats_examples"
    assert detect_format(src) == "cases"
    m = import_dataset(src, tmp_path / "ds", progress=False)
    assert (m.task, m.dims, m.channels) == ("segmentation", 3, ["Flair", "T1c"])
    assert [c.id for c in m.cases] == [f"brats_2013_pat000{n}_1" for n in (3, 4, 5, 6)]
    assert [Path(p).name for p in m.cases[0].images] == [FLAIR, T1C]  # brainmask left out
    assert Path(m.cases[0].label).name == LABEL
    assert m.label_values == [0, 1, 2, 3, 4] and m.label_mapping == {}
    assert m.modality == {"0": "MR", "1": "MR"}
    assert len(m.splits) == 4  # 4 cases: 4 folds of one validation case
    assert all(len(s["val"]) == 1 for s in m.splits)


def _brats2020_like(shared_data: Path, root: Path, cases: list[str]) -> Path:
    """Case folders whose file names carry the case id (BraTS 2020 style), as links to the examples."""
    for n, case in enumerate(cases):
        folder = root / f"BraTS20_{n:03d}"
        folder.mkdir(parents=True)
        for src, suffix in ((FLAIR, "flair"), (T1C, "t1ce"), (LABEL, "seg"), (BRAIN, "brainmask")):
            (folder / f"{folder.name}_{suffix}.nii.gz").symlink_to(shared_data / "brats_examples" / case / src)
    return root


def test_case_id_in_file_names_and_label_names(shared_data: Path, tmp_path: Path):
    src = _brats2020_like(shared_data, tmp_path / "src", ["brats_2013_pat0003_1", "brats_2013_pat0005_1"])
    m = import_dataset(src, tmp_path / "ds", label_names="1:necrosis,4:enhancing", progress=False)
    assert m.channels == ["flair", "t1ce"] and m.extra["label_pattern"] == "*_seg.nii.gz"
    assert [Path(p).name for p in m.case_by_id["BraTS20_001"].images] == ["BraTS20_001_flair.nii.gz",
                                                                          "BraTS20_001_t1ce.nii.gz"]
    assert m.labels["1"] == "necrosis" and m.labels["4"] == "enhancing" and m.labels["2"] == "label_2"


def test_explicit_patterns_and_a_missing_channel(shared_data: Path, tmp_path: Path):
    src = tmp_path / "src"
    for case in ("brats_2013_pat0003_1", "brats_2013_pat0004_1"):
        (src / case).mkdir(parents=True)
        for name in (FLAIR, LABEL):
            (src / case / name).symlink_to(shared_data / "brats_examples" / case / name)
    m = import_dataset(src, tmp_path / "ds", channel_patterns="FLAIR=Flair*", progress=False)
    assert m.channels == ["FLAIR"] and len(m.cases) == 2
    assert m.extra["label_pattern"] == LABEL and Path(m.cases[1].label).name == LABEL  # the label is still guessed
    with pytest.raises(InputError, match=r"brats_2013_pat0003_1: no file matches the channel T1c pattern 'T1c\*'"):
        import_dataset(src, tmp_path / "ds2", channel_patterns="FLAIR=Flair*,T1c=T1c*", label_pattern="OT*",
                       progress=False)


def test_option_of_another_format_is_refused(shared_data: Path, tmp_path: Path):
    with pytest.raises(InputError, match="option --images-dir does not apply to format cases"):
        import_dataset(shared_data / "brats_examples", tmp_path / "ds", images_dir="x", progress=False)


def test_hint_names_the_option_syntax_that_works(shared_data: Path, tmp_path: Path):
    src = _brats2020_like(shared_data, tmp_path / "src", ["brats_2013_pat0003_1", "brats_2013_pat0005_1"])
    for folder in src.iterdir():  # a second file that could be the label
        (folder / f"{folder.name}_gt.nii.gz").symlink_to(folder / f"{folder.name}_seg.nii.gz")
    with pytest.raises(InputError, match=r"several files could be the label .*--option label_pattern=GLOB"):
        import_dataset(src, tmp_path / "ds", progress=False)
    m = import_dataset(src, tmp_path / "ds", label_pattern="*_seg.nii.gz", progress=False)
    assert Path(m.cases[0].label).name == "BraTS20_000_seg.nii.gz"
