"""``predict --disable-tta``, ``--overlap`` and ``--folds``: fewer network passes, the same masks' format,
the folds asked for, and a ``--continue`` that refuses to mix settings in one folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import shrink_plan, write_isbi_pairs
from PIL import Image as PILImage

from medsight import api
from medsight.cli import main
from medsight.errors import InputError


@pytest.fixture()
def isbi_run(tmp_path, shared_data):
    """A 2-epoch ISBI EM run on four real 96^2 crops, trained on 32^2 patches (so prediction slides windows)."""
    src = write_isbi_pairs(tmp_path / "src", shared_data, n=4, size=96)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=2, progress=False)
    plan = shrink_plan(ds, epochs=2, patch_size=[32, 32], whole_image=False)
    # nnU-Net's mirroring on both axes (four crops of one slice look too consistent for the plan to choose it)
    shrink_plan(ds, epochs=2, patch_size=[32, 32], whole_image=False,
                inference={**plan["inference"], "mirror_axes": [0, 1], "overlap": 0.5})
    return api.train(ds, fold=0, quiet=True, threads=1), src


@pytest.fixture()
def images_seen(monkeypatch):
    """Number of images (windows, flips included) that reach a network's first convolution (one input channel)."""
    seen = [0]
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        if self.in_channels == 1:
            seen[0] += int(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    return seen


def test_disable_tta_and_overlap_cut_the_passes_and_keep_the_masks(isbi_run, tmp_path, images_seen):
    run, src = isbi_run
    plan = json.loads((run / "plan.json").read_text())
    mirrorings = 2 ** len(plan["inference"]["mirror_axes"])
    assert mirrorings > 1 and plan["inference"]["overlap"] == 0.5
    image = src / "images" / "em_00.png"

    api.predict(run, [image], tmp_path / "default", quiet=True)
    default = images_seen[0]
    assert default == 5 * 6 * mirrorings  # 96 x 104 in 32-wide windows every 16 px (last flush), every flip
    images_seen[0] = 0
    assert main(["predict", str(run), str(image), "-o", str(tmp_path / "fast"), "--disable-tta", "--overlap", "0"]) == 0
    assert images_seen[0] == 3 * 4  # windows at 0, 32, 64 (and 72 across 104), one pass each

    a = np.asarray(PILImage.open(tmp_path / "default" / "em_00.png"))
    b = np.asarray(PILImage.open(tmp_path / "fast" / "em_00.png"))
    assert a.shape == b.shape == np.asarray(PILImage.open(image)).shape == (96, 104)
    assert set(np.unique(b)) <= {0, 1}


def test_continue_refuses_to_mix_inference_settings(isbi_run, tmp_path):
    run, src = isbi_run
    out = tmp_path / "o"
    api.predict(run, [src / "images" / "em_00.png"], out, quiet=True, test_time_augmentation=False)
    with pytest.raises(InputError, match="other inference settings.*test_time_augmentation False -> True"):
        api.predict(run, [src / "images"], out, continue_=True, quiet=True)
    with pytest.raises(InputError, match=r"overlap 0\.5 -> 0\.25"):
        api.predict(run, [src / "images"], out, continue_=True, quiet=True, test_time_augmentation=False,
                    overlap=0.25)
    api.predict(run, [src / "images"], out, continue_=True, quiet=True, test_time_augmentation=False)
    records = [json.loads(x) for x in (out / ".medsight_predict.jsonl").read_text().splitlines()]
    assert len(records) == 4
    assert all(r["inference"] == {"test_time_augmentation": False, "overlap": 0.5, "folds": ["0"]} for r in records)


def test_folds_choose_the_ensemble_and_an_untrained_one_is_refused(isbi_run, tmp_path, capsys):
    run, src = isbi_run
    image = str(src / "images" / "em_01.png")
    assert main(["predict", str(run), image, "-o", str(tmp_path / "none"), "--folds", "0", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no trained fold 1 here (trained: 0)" in err[0]
    assert not (tmp_path / "none").exists()
    assert main(["predict", str(run), image, "-o", str(tmp_path / "f0"), "--folds", "0"]) == 0
    record = json.loads((tmp_path / "f0" / ".medsight_predict.jsonl").read_text())
    assert record["case"] == "em_01" and record["inference"]["folds"] == ["0"]


def test_a_record_from_before_the_settings_counts_as_the_plans_own(isbi_run, tmp_path):
    run, src = isbi_run
    out = tmp_path / "o"
    api.predict(run, [src / "images" / "em_00.png"], out, quiet=True)
    state = out / ".medsight_predict.jsonl"
    old = json.loads(state.read_text())
    del old["inference"]  # as an earlier medsight wrote it
    state.write_text(json.dumps(old) + "\n")
    api.predict(run, [src / "images"], out, continue_=True, quiet=True)
    with pytest.raises(InputError, match="other inference settings"):
        api.predict(run, [src / "images"], out, continue_=True, quiet=True, test_time_augmentation=False)


@pytest.mark.parametrize("overlap", [1.0, -0.1, 1.5, float("nan")])
def test_overlap_out_of_range_is_refused_before_anything_is_written(tiny_breast, tmp_path, capsys, overlap):
    out = tmp_path / "never"
    code = main(["predict", str(tmp_path / "no_run"), str(tiny_breast), "-o", str(out), "--overlap", str(overlap)])
    assert code != 0 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "overlap must be a fraction of the window" in err[0]


def test_classification_refuses_overlap_and_disables_its_flips(tiny_breast, tmp_path, images_seen):
    run = api.train(tiny_breast, quiet=True, threads=1)
    with pytest.raises(InputError, match="no sliding windows"):
        api.predict(run, [tiny_breast], tmp_path / "o", quiet=True, overlap=0.25)
    assert not (tmp_path / "o").exists()

    images_seen[0] = 0
    api.predict(run, [tiny_breast], tmp_path / "tta", quiet=True)
    with_flips = images_seen[0]
    images_seen[0] = 0
    api.predict(run, [tiny_breast], tmp_path / "plain", quiet=True, test_time_augmentation=False)
    flips = 2 ** len(json.loads((run / "plan.json").read_text())["test_time_augmentation"]["mirror_axes"])
    assert flips > 1 and images_seen[0] > 0 and with_flips == flips * images_seen[0]
    assert (tmp_path / "plain" / "predictions.csv").read_text().count("\n") == \
        (tmp_path / "tta" / "predictions.csv").read_text().count("\n")
