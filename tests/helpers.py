"""Helpers shared by tests: small real datasets and quick plans."""
from __future__ import annotations

from pathlib import Path


def write_npz_subset(path: Path, n_train: int = 48, n_val: int = 16) -> Path:
    """A small BreastMNIST file (real images, the demo data shipped with medsight)."""
    import numpy as np

    from medsight.demo import demo_data_path

    z = np.load(demo_data_path())
    np.savez(path, train_images=z["train_images"][:n_train], train_labels=z["train_labels"][:n_train],
             val_images=z["val_images"][:n_val], val_labels=z["val_labels"][:n_val])
    return path


def shrink_plan(dataset_dir: Path, epochs: int = 2, **extra) -> dict:
    """Plan a dataset quickly and edit the plan as a user may: a tiny network, few epochs."""
    import json

    from medsight import api

    plan = api.plan(dataset_dir, budget_minutes=0.1, quiet=True, measure=False)
    if plan["task"] == "classification":
        plan["network"]["widths"] = [8, 16, 16, 32]
        plan["batch_size"] = 16
        plan["steps_per_epoch"] = 3
    else:
        n = len(plan["network"]["features"])
        plan["network"]["features"] = [8] * n
        plan["batch_size"] = 2
        plan["steps_per_epoch"] = 2
    plan["epochs"] = epochs
    plan.update(extra)
    (dataset_dir / "plan.json").write_text(json.dumps(plan, indent=1))
    return plan



def write_isbi_pairs(root: Path, shared_data: Path, n: int = 4, size: int = 96) -> Path:
    """A pairs-layout folder of ``n`` real ISBI EM crops (images/ + labels/, membranes = 0 in the labels)."""
    import numpy as np
    from PIL import Image as PILImage

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        img = np.asarray(PILImage.open(shared_data / f"isbi2012_em/images/{i}.png"))[:size, :size + 8]
        lab = np.asarray(PILImage.open(shared_data / f"isbi2012_em/labels/{i}.png"))[:size, :size + 8]
        PILImage.fromarray(img).save(root / f"images/em_{i:02d}.png")
        PILImage.fromarray(lab).save(root / f"labels/em_{i:02d}.png")
    return root


def write_brats_cases(root: Path, shared_data: Path, n: int = 3) -> Path:
    """A cases-layout folder of ``n`` real BraTS crops (FLAIR + T1c + label), geometry of the source kept."""
    import nibabel as nib
    import numpy as np

    cases = sorted((shared_data / "brats_examples").iterdir())[:n]
    for c in cases:
        lab = nib.load(c / "OTMultiClass.nii.gz")
        arr = np.asarray(lab.dataobj)
        centre = np.argwhere(arr > 0).mean(0).astype(int)
        sl = tuple(slice(max(0, m - s // 2), max(0, m - s // 2) + s) for m, s in zip(centre, (40, 40, 24)))
        out = root / c.name
        out.mkdir(parents=True)
        for name in ("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd", "OTMultiClass"):
            img = nib.load(c / f"{name}.nii.gz")
            data = np.asarray(img.dataobj)[sl]
            affine = img.affine.copy()
            affine[:3, 3] = img.affine[:3, :3] @ np.array([s.start for s in sl]) + img.affine[:3, 3]
            nib.save(nib.Nifti1Image(data.astype(np.uint8 if name == "OTMultiClass" else np.float32), affine),
                     out / f"{name}.nii.gz")
    return root


def link_files(files: list[Path], folder: Path) -> Path:
    """Symlink ``files`` into ``folder`` (created) under their own names; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


def write_bccd_subset(root: Path, bccd: Path, n_train: int = 8, n_val: int = 4) -> Path:
    """A VOC folder holding the first ``n_train`` / ``n_val`` images of BCCD's own split files."""
    import shutil

    train = (bccd / "splits/train.txt").read_text().split()[:n_train]
    val = (bccd / "splits/val.txt").read_text().split()[:n_val]
    for d in ("JPEGImages", "Annotations", "splits"):
        (root / d).mkdir(parents=True)
    for i in train + val:
        shutil.copy(bccd / f"JPEGImages/{i}.jpg", root / f"JPEGImages/{i}.jpg")
        shutil.copy(bccd / f"Annotations/{i}.xml", root / f"Annotations/{i}.xml")
    (root / "splits/train.txt").write_text("\n".join(train) + "\n")
    (root / "splits/val.txt").write_text("\n".join(val) + "\n")
    return root


def write_dicom_series(volume, folder: Path, study_uid: str, series_uid: str, positions: list[float] | None = None,
                       prefix: str = "") -> Path:
    """One MR DICOM file per slice of a real (x, y, z) integer volume, 2 mm pixels, each slice at its own
    ImagePositionPatient z (default every 2 mm); files ``<prefix>slice_KKK.dcm``."""
    import numpy as np
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    positions = [2.0 * k for k in range(volume.shape[2])] if positions is None else positions
    for k, z in enumerate(positions):
        plane = sitk.GetImageFromArray(np.ascontiguousarray(volume[:, :, k].T))
        plane.SetSpacing((2.0, 2.0))
        tags = {"0008|0060": "MR", "0020|000d": study_uid, "0020|000e": series_uid, "0010|0020": "TEST",
                "0020|0032": f"10\\-20\\{z:g}", "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0013": str(k + 1),
                "0028|0030": "2\\2", "0008|0018": f"{series_uid}.{k + 1}", "0008|0016": "1.2.840.10008.5.1.4.1.1.4"}
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}slice_{k:03d}.dcm"))
        writer.Execute(plane)
    return folder


def write_isic_sample(shared_data: Path, folder: Path, per_class: int = 8) -> Path:
    """Symlinks to the first ``per_class`` benign and ``per_class`` malignant ISIC images (by name) with their
    JSON sidecars (which hold the label, age and sex)."""
    import json

    folder.mkdir(parents=True)
    counts = {"benign": 0, "malignant": 0}
    for meta in sorted((shared_data / "isic_uda1").glob("ISIC_*.json")):
        label = json.loads(meta.read_text())["meta"]["clinical"]["benign_malignant"]
        if label in counts and counts[label] < per_class:
            counts[label] += 1
            for f in (meta, meta.with_suffix(".jpg")):
                (folder / f.name).symlink_to(f)
    return folder
