"""`medsight pretrain` survives an interruption: its checkpoint, --resume, and the refusals around them."""
from __future__ import annotations

import os

import pytest
import torch

import medsight.pretrain as pretraining
from medsight.cli import main
from medsight.errors import InputError


@pytest.fixture()
def six_images(shared_data, tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for f in sorted((shared_data / "isic_uda1").glob("ISIC_*.jpg"))[:6]:
        (folder / f.name).symlink_to(f)
    return folder


def _interrupt_at_call(monkeypatch, n: int):
    """Make the n-th loss computation raise KeyboardInterrupt, as Ctrl-C would in the middle of an epoch."""
    calls = {"n": 0}
    real = pretraining.nt_xent_loss

    def loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pretraining, "nt_xent_loss", loss)


def test_an_interrupted_pretraining_resumes_to_the_same_encoder(six_images, tmp_path, monkeypatch, capsys):
    torch.set_num_threads(1)
    options = dict(epochs=3, side=32, quiet=True, checkpoint_every_seconds=0)
    whole = pretraining.pretrain(six_images, tmp_path / "whole.safetensors", **options)

    out = tmp_path / "enc.safetensors"
    _interrupt_at_call(monkeypatch, 3)  # 6 images make one step an epoch: killed in epoch 3, saved after 2
    with pytest.raises(KeyboardInterrupt):
        pretraining.pretrain(six_images, out, **options)
    monkeypatch.undo()
    saved = pretraining.checkpoint_path(out)
    assert saved.is_file() and not out.exists()
    # a new run does not start over the unfinished one, and one with other settings cannot continue it
    assert main(["pretrain", str(six_images), "-o", str(out), "--epochs", "3", "--side", "32", "--threads", "1"]) == 2
    assert "an unfinished pretraining of this encoder exists" in capsys.readouterr().err
    with pytest.raises(InputError, match="other images or settings"):
        pretraining.pretrain(six_images, out, **{**options, "side": 40}, resume=True)

    pretraining.pretrain(six_images, out, **options, resume=True)
    assert not saved.exists() and not pretraining.Path(str(saved) + ".sha256").exists()
    resumed, uninterrupted = pretraining.load_encoder(out), pretraining.load_encoder(whole)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    info = pretraining.json.loads((tmp_path / "enc.safetensors.json").read_text())
    assert info["epochs"] == 3
    # killed before its first checkpoint, nothing was kept: --resume starts from the beginning
    again = pretraining.pretrain(six_images, tmp_path / "never.safetensors", **options, resume=True)
    assert all(torch.equal(v, uninterrupted[k]) for k, v in pretraining.load_encoder(again).items())


def test_bad_sizes_outputs_and_too_few_images_are_refused_before_any_work(six_images, tmp_path, capsys):
    with pytest.raises(InputError, match="side must be a whole number of at least 1"):
        pretraining.pretrain(six_images, tmp_path / "enc.safetensors", side=0)
    folder = tmp_path / "existing"
    folder.mkdir()
    assert main(["pretrain", str(six_images), "-o", str(folder), "--threads", "1"]) == 2
    assert capsys.readouterr().err.strip() == (f"medsight: error: {folder}: is a folder, not a file (give the encoder "
                                               "file to write, e.g. -o encoder.safetensors)")
    assert list(folder.iterdir()) == [] and list(tmp_path.glob(".*.tmp")) == []
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.jpg").symlink_to(next(six_images.iterdir()))
    assert main(["pretrain", str(one), "-o", str(tmp_path / "enc.safetensors"), "--threads", "1"]) == 2
    assert capsys.readouterr().err.strip() == (f"medsight: error: {one}: contrastive pretraining needs at least 4 "
                                               "images, the folder holds 1")
    assert not (tmp_path / "enc.safetensors").exists()


def test_a_failed_rename_leaves_no_temporary_encoder(tmp_path, monkeypatch):
    from medsight.nets.efficientnet import efficientnet_lite0

    def refuse(source, target):
        raise IsADirectoryError(21, "Is a directory", str(source), str(target))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(IsADirectoryError):
        pretraining.save_encoder(efficientnet_lite0(num_classes=2, pretrained=False).backbone,
                                 tmp_path / "enc.safetensors", {})
    assert list(tmp_path.iterdir()) == []
