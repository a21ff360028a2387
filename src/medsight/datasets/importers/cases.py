"""``cases``: one folder per case; channel files and the label picked by file-name patterns (BraTS-like).

Patterns are ``fnmatch`` globs on file names (``Flair*``, ``*_t1ce.nii.gz``), given as
``channel_patterns="FLAIR=Flair*,T1c=T1c*"`` and ``label_pattern="OTMultiClass*"``. Without them, the
file names every case folder shares are used (the folder's own name replaced by ``*``, so
``BraTS20_001/BraTS20_001_flair.nii.gz`` gives ``*_flair.nii.gz``): the file whose name says label / seg /
OT / gt / truth / annotation is the label, brain masks and ROI files are ignored, the rest are channels,
named by their first name token (``Flair_subtrMeanDivStd.nii.gz`` -> ``Flair``). A file that holds several
volumes (a 4D NIfTI) gives one channel per volume, ``<name>_0``, ``<name>_1``, ...
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from medsight.datasets.importers.common import (is_image_file, labels_from_mapping, list_images, modality_map,
                                                 parse_int_map, parse_name_map, stem, subdirs)
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import read_header

FORMAT = "cases"
LOOKS_FOR = "one sub-folder per case, each holding the same kinds of image files"
LABEL_NAME = re.compile(r"(label|seg|^ot|_ot|^gt|_gt|truth|annot|manual)", re.IGNORECASE)
IGNORED_NAME = re.compile(r"(brain.?mask|^mask|_mask|roi|fov)", re.IGNORECASE)


def _case_dirs(source: Path) -> list[Path]:
    return [d for d in subdirs(source) if any(is_image_file(p) for p in d.iterdir())]


def detect(source: Path) -> bool:
    """True when every sub-folder of SOURCE holds image files and SOURCE itself holds none."""
    if not source.is_dir() or list_images(source):
        return False
    dirs = subdirs(source)
    return len(dirs) >= 2 and len(_case_dirs(source)) == len(dirs)


def _shared_patterns(case_dirs: list[Path]) -> list[str]:
    """File names (case folder name replaced by ``*``) present in every case folder."""
    shared: set[str] | None = None
    for folder in case_dirs:
        names = {p.name.replace(folder.name, "*") for p in list_images(folder)}
        shared = names if shared is None else shared & names
    return sorted(shared or ())


def _channel_name(pattern: str) -> str:
    tokens = [t for t in re.split(r"[_\-.\s*]+", stem(pattern.replace("*", ""))) if t]
    return tokens[0] if tokens else pattern


def guess_label(shared: list[str], where: Path) -> str | None:
    """The shared file name that says label / seg / OT / gt / truth / annotation, or None."""
    labels = [p for p in shared if LABEL_NAME.search(p.replace("*", ""))]
    if len(labels) > 1:
        raise InputError(f"several files could be the label ({', '.join(labels)})", path=where,
                         fix="pick one with --option label_pattern=GLOB")
    return labels[0] if labels else None


def guess_channels(shared: list[str], label_pattern: str | None, where: Path) -> dict[str, str]:
    """{channel name: file name} of the shared files that are neither the label nor a brain mask / ROI."""
    channel_files = [p for p in shared if not (label_pattern and fnmatch.fnmatch(p, label_pattern))
                     and not IGNORED_NAME.search(p.replace("*", ""))]
    if not channel_files:
        raise InputError("the case folders share no image file names to use as channels", path=where,
                         fix="give --option channel_patterns=NAME=GLOB,... and --option label_pattern=GLOB")
    names = [_channel_name(p) for p in channel_files]
    if len(set(names)) != len(names):
        names = [stem(p.replace("*", "")) for p in channel_files]
    return dict(zip(names, channel_files))


def _one_file(folder: Path, pattern: str, what: str) -> Path:
    hits = [p for p in list_images(folder) if fnmatch.fnmatch(p.name, pattern)]
    if len(hits) != 1:
        problem = (f"no file matches the {what} pattern {pattern!r}" if not hits else
                   f"{len(hits)} files match the {what} pattern {pattern!r} ({', '.join(p.name for p in hits[:3])})")
        raise InputError(problem, path=folder, fix="adjust --option channel_patterns=... / --option label_pattern=...")
    return hits[0]


def build(source: Path, task: str | None = None, channel_patterns: str | dict | None = None,
          label_pattern: str | None = None, label_map: str | dict | None = None) -> Manifest:
    """Manifest of a folder of case folders (segmentation)."""
    if task not in (None, "segmentation"):
        raise InputError(f"the cases format reads label masks, so its task is segmentation, not {task}", path=source)
    case_dirs = _case_dirs(source)
    if not case_dirs:
        raise InputError("no case folders with image files", path=source, fix="put each case in its own folder")
    patterns = parse_name_map(channel_patterns, "--channel-patterns")
    if not patterns or not label_pattern:
        shared = _shared_patterns(case_dirs)
        label_pattern = label_pattern or guess_label(shared, source)
        patterns = patterns or guess_channels(shared, label_pattern, source)
    if not label_pattern:
        raise InputError("cannot tell which file is the label", path=source, fix="give --option label_pattern=GLOB")
    cases = []
    for folder in case_dirs:
        images = [str(_one_file(folder, pattern, f"channel {name}")) for name, pattern in patterns.items()]
        cases.append(Case(id=folder.name, images=images, label=str(_one_file(folder, label_pattern, "label"))))
    info = read_header(cases[0].images[0])
    channels = []  # a file holding several volumes (a 4D NIfTI of FLAIR + T1c) gives one channel per volume
    for name, ref in zip(patterns, cases[0].images):
        count = (info if ref == cases[0].images[0] else read_header(ref)).num_channels
        channels += [name] if count == 1 else [f"{name}_{k}" for k in range(count)]
    mapping = parse_int_map(label_map, "--label-map")
    return Manifest(name=source.name, task="segmentation", dims=info.ndim, channels=channels,
                    labels=labels_from_mapping(mapping) if mapping else {}, cases=cases, label_mapping=mapping,
                    modality=modality_map(channels),
                    extra={"channel_patterns": patterns, "label_pattern": label_pattern})
