"""DICOM: single files and series folders, through SimpleITK (GDCM) with pydicom for tags and diagnosis.

A folder may hold several series; GDCM's series IDs tell them apart and sort each one's files by
position along the slice normal (file names do not matter). A series reads as a 3D image in
(x, y, z) = (columns, rows, slices) order. A single-frame DICOM file reads as a 2D image in
(rows, columns) order, like a PNG of it, with its pixel spacing and an in-plane frame (origin 0);
a multi-frame file reads as 3D. Rescale slope and intercept are applied.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from medsight.errors import InputError
from medsight.io.image import Image
from medsight.io.info import ImageInfo
from medsight.io.sitk_io import image_from_sitk, itk_error_summary, read_sitk_info

_TAGS = ("SeriesInstanceUID", "SeriesDescription", "Modality")


@dataclass(frozen=True)
class DicomSeries:
    """One series in a folder: its UID, description, modality and its files sorted by position."""

    uid: str
    description: str
    modality: str
    files: tuple[str, ...]

    @property
    def num_files(self) -> int:
        """Number of files (slices or frames) in the series."""
        return len(self.files)

    def summary(self) -> str:
        """``uid (description, modality, N files)`` for messages."""
        return f"{self.uid} ({self.description or 'no description'}, {self.modality or '?'}, {self.num_files} files)"


def _pydicom_problem(path: Path) -> str:
    """What pydicom says is wrong with a file SimpleITK could not read ('' when pydicom reads it)."""
    try:
        dataset = pydicom.dcmread(str(path))
        dataset.pixel_array
    except Exception as err:  # pydicom raises many types for bad files; only its message is kept
        return " ".join(str(err).split())
    return ""


def _to_2d(image: Image) -> Image:
    """A single-slice 3D (x, y, 1) image as 2D (rows, columns) with in-plane pixel spacing."""
    rows_cols = np.ascontiguousarray(np.swapaxes(image.array[..., 0], 1, 2))
    return Image(rows_cols, spacing=(image.spacing[1], image.spacing[0]), channel_names=image.channel_names)


def read_dicom_file(path: Path) -> Image:
    """Read one DICOM file: 2D (rows, columns) for one frame, 3D (x, y, frames) for several."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        img = reader.Execute()
    except RuntimeError as err:
        problem = _pydicom_problem(path) or itk_error_summary(err, path)
        raise InputError(f"truncated or corrupt DICOM ({problem})", path=path) from None
    image = image_from_sitk(img)
    return _to_2d(image) if image.ndim == 3 and image.spatial_shape[2] == 1 else image


def read_dicom_file_info(path: Path) -> ImageInfo:
    """Geometry and voxel type of one DICOM file from its header."""
    info = read_sitk_info(path, image_io="GDCMImageIO")
    if info.ndim == 3 and info.spatial_shape[2] == 1:
        return ImageInfo((info.spatial_shape[1], info.spatial_shape[0]), info.num_channels,
                         (info.spacing[1], info.spacing[0]), (0.0, 0.0), np.eye(2), info.dtype)
    return info


def _folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("DICOM folder not found", path=folder)
    return folder


def _series_tags(first_file: str) -> dict[str, str]:
    try:
        dataset = pydicom.dcmread(first_file, stop_before_pixels=True, specific_tags=list(_TAGS))
    except Exception:  # an unreadable header still leaves the series listed, without tags
        return {}
    return {tag: str(dataset.get(tag, "") or "") for tag in _TAGS}


#: what a folder's scan found, keyed by the folder and its files' names, sizes and times (so a changed file
#: scans again): ``predict`` checks a series folder before it writes anything, then reads it
_SCANS: dict[tuple, list[DicomSeries]] = {}
_EVENLY_SPACED: set[tuple] = set()
_MAX_REMEMBERED = 64


def _folder_key(folder: Path) -> tuple:
    entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.is_file())
    return (str(folder.resolve()), tuple(entries))


def list_dicom_series(folder: str | Path) -> list[DicomSeries]:
    """The DICOM series in ``folder`` (not its subfolders), each with its files sorted by position (a folder
    whose files have not changed since it was last scanned in this process is not scanned again)."""
    folder = _folder(folder)
    key = _folder_key(folder)
    if key not in _SCANS:
        if len(_SCANS) >= _MAX_REMEMBERED:
            _SCANS.clear()
            _EVENLY_SPACED.clear()
        _SCANS[key] = _scan_series(folder)
    return list(_SCANS[key])


def _scan_series(folder: Path) -> list[DicomSeries]:
    import SimpleITK as sitk

    series = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        if not files:
            continue
        tags = _series_tags(files[0])
        series.append(DicomSeries(uid, tags.get("SeriesDescription", ""), tags.get("Modality", ""), files))
    return series


def _choose_series(folder: Path, series_uid: str | None) -> DicomSeries:
    series = list_dicom_series(folder)
    if not series:
        raise InputError("no DICOM series found in this folder", path=folder,
                         fix="point to the folder that holds the .dcm files of one series")
    if series_uid is not None:
        for item in series:
            if item.uid == series_uid:
                return item
        raise InputError(f"no series {series_uid} here; the folder holds: "
                         + "; ".join(s.summary() for s in series), path=folder)
    if len(series) > 1:
        raise InputError(f"{len(series)} DICOM series in one folder: " + "; ".join(s.summary() for s in series),
                         path=folder, fix="pass the series UID to read, or give each series its own folder")
    return series[0]


#: a slice step that differs from the series' median step by more than this share is a gap or uneven spacing
SLICE_STEP_TOLERANCE = 0.1


def _slice_positions(files: tuple[str, ...]) -> np.ndarray | None:
    """Each file's position along the slice normal (mm), or None when a header lacks position/orientation."""
    positions = []
    for name in files:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True,
                                 specific_tags=["ImagePositionPatient", "ImageOrientationPatient"])
            position = np.asarray([float(v) for v in ds.ImagePositionPatient])
            orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        except Exception:  # noqa: BLE001 - missing or malformed tags: GDCM's order and spacing stand
            return None
        if position.shape != (3,) or orientation.shape != (6,):
            return None
        positions.append(position @ np.cross(orientation[:3], orientation[3:]))
    return np.asarray(positions)


def is_volume_series(series: DicomSeries) -> bool:
    """True when a series is a volume: several files placed in space (ImagePositionPatient and
    ImageOrientationPatient) at more than one slice position, not a set of images without positions or
    all at one (such as X-rays or secondary captures that share a series)."""
    if series.num_files < 2:
        return False
    ends = _slice_positions((series.files[0], series.files[-1]))  # GDCM sorts the files by position
    return ends is not None and bool(abs(ends[1] - ends[0]) > 1e-6)


def check_slice_spacing(folder: Path, series: DicomSeries) -> None:
    """Refuse a series whose slices are not evenly spaced (a missing slice, or mixed slice steps): read onto
    one regular grid, every slice beyond the gap would sit at the wrong position."""
    if series.num_files < 3:
        return
    key = (_folder_key(folder), series.uid)
    if key in _EVENLY_SPACED:  # checked before in this process, files unchanged
        return
    positions = _slice_positions(series.files)
    if positions is None:
        return
    steps = np.abs(np.diff(positions))
    median = float(np.median(steps))
    if median <= 0:
        i = int(np.argmin(steps))
        raise InputError(f"series {series.uid}: {Path(series.files[i]).name} and {Path(series.files[i + 1]).name} "
                         "lie at the same slice position (duplicate slices, or several volumes in one series)",
                         path=folder, fix="keep one file per slice position")
    uneven = np.flatnonzero(np.abs(steps - median) > SLICE_STEP_TOLERANCE * median)
    if uneven.size:
        i = int(uneven[np.argmax(np.abs(steps[uneven] - median))])
        missing = steps[i] / median - 1
        gap = missing > 0.5 and abs(missing - round(missing)) < 0.2
        what = f"about {round(missing)} slice(s) missing" if gap else "uneven slice spacing"
        raise InputError(f"series {series.uid}: {what}: {steps[i]:.4g} mm between {Path(series.files[i]).name} and "
                         f"{Path(series.files[i + 1]).name}, {median:.4g} mm between most slices "
                         f"({uneven.size} uneven step(s) in {series.num_files} slices)", path=folder,
                         fix="add the missing slices" if gap else "resample the series onto evenly spaced slices")
    _EVENLY_SPACED.add(key)


def read_series(folder: str | Path, series_uid: str | None = None) -> Image:
    """Read one DICOM series of ``folder`` as a 3D (x, y, z) image; ``series_uid`` picks among several."""
    import SimpleITK as sitk

    folder = _folder(folder)
    chosen = _choose_series(folder, series_uid)
    check_slice_spacing(folder, chosen)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen.files))
    try:
        img = reader.Execute()
    except RuntimeError as err:
        bad = next((f for f in chosen.files if _pydicom_problem(Path(f))), None)
        problem = f"{Path(bad).name}: {_pydicom_problem(Path(bad))}" if bad else itk_error_summary(err, folder)
        raise InputError(f"unreadable DICOM series {chosen.uid} ({problem})", path=folder) from None
    return image_from_sitk(img)


def read_series_info(folder: str | Path, series_uid: str | None = None) -> ImageInfo:
    """Geometry of a series from the headers of its first and last files (slice step from their positions)."""
    folder = _folder(folder)
    chosen = _choose_series(folder, series_uid)
    check_slice_spacing(folder, chosen)
    first = read_sitk_info(Path(chosen.files[0]), image_io="GDCMImageIO")
    last = read_sitk_info(Path(chosen.files[-1]), image_io="GDCMImageIO")
    count = chosen.num_files
    spacing = list(first.spacing)
    if count > 1:
        step = np.asarray(last.origin) - np.asarray(first.origin)
        spacing[2] = float(abs(step @ np.asarray(first.direction)[:, 2])) / (count - 1) or spacing[2]
    return ImageInfo((first.spatial_shape[0], first.spatial_shape[1], count), first.num_channels, tuple(spacing),
                     first.origin, first.direction, first.dtype)
