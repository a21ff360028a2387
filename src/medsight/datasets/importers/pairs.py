"""``pairs``: an image folder and a mask folder matched by case id (DRIVE, ISBI 2012 EM, Shenzhen CXR).

Folders are found by name inside SOURCE (or inside its only sub-folder, or its ``training``/``train``
sub-folder): images in ``images|imgs|image|img|train_images|JPEGImages``, masks in ``labels|masks|
1st_manual|train_masks|annotations|label|gt|groundtruth|ground_truth|segmentations``. When masks were
found there, a ``mask|fov|roi`` folder is read as the field-of-view mask that scores are computed in
(DRIVE's ``mask/``) -> ``Case.eval_mask``; ``eval_mask_dir="none"`` turns that off.

Files are matched by their leading name tokens (split at ``_ - . space``): ``21_training.tif`` goes with
``21_manual1.gif`` and ``21_training_mask.gif``; ``CHNCXR_0001_0.png`` with ``CHNCXR_0001_0_mask.png``.
The case id is the image's file name without extension (what ``predict`` names its output).
Mask values are read at check time: {0, 255} becomes {0, 1} unless ``label_map`` says otherwise.
"""
from __future__ import annotations

import re
from pathlib import Path

from medsight.datasets.importers.common import (channel_names_for, child_dir, labels_from_mapping, list_images,
                                                 modality_map, parse_int_map, resolve_option_dir, stem,
                                                 subdirs)
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import read_header

FORMAT = "pairs"
IMAGE_DIRS = ("images", "imgs", "image", "img", "train_images", "JPEGImages")
LABEL_DIRS = ("labels", "masks", "1st_manual", "train_masks", "annotations", "label", "gt", "groundtruth",
              "ground_truth", "segmentations")
EVAL_MASK_DIRS = ("mask", "fov", "roi")
LOOKS_FOR = (f"an image folder ({'|'.join(IMAGE_DIRS)}) beside a mask folder ({'|'.join(LABEL_DIRS)})")


def find_folders(source: Path) -> tuple[Path, Path, Path | None] | None:
    """(images, masks, eval masks or None) found by name in SOURCE or one level down, else None."""
    roots = [source]
    children = subdirs(source)
    if len(children) == 1:
        roots.append(children[0])
    train = child_dir(source, ("training", "train"))
    if train is not None and train not in roots:
        roots.append(train)
    for root in roots:
        image_dir, label_dir = child_dir(root, IMAGE_DIRS), child_dir(root, LABEL_DIRS)
        if image_dir is not None and label_dir is not None:
            return image_dir, label_dir, child_dir(root, EVAL_MASK_DIRS)
    return None


def detect(source: Path) -> bool:
    """True when SOURCE holds an image folder and a mask folder."""
    return source.is_dir() and find_folders(source) is not None


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[_\-.\s]+", name.lower()) if t]


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _min_id_tokens(stems: list[list[str]]) -> list[int]:
    """Per image: how many leading tokens a mask must share with it (enough to tell images apart)."""
    needed = []
    for i, tokens in enumerate(stems):
        others = max((_common_prefix(tokens, o) for j, o in enumerate(stems) if j != i), default=0)
        first_digit = next((k for k, t in enumerate(tokens) if any(ch.isdigit() for ch in t)), 0)
        needed.append(max(min(others + 1, len(tokens)), first_digit + 1, 1))
    return needed


def match_by_id(images: list[Path], others: list[Path], what: str, other_dir: Path) -> dict[Path, Path]:
    """{image: its file among ``others``}; InputError for an image or a file left without a partner."""
    image_tokens = [_tokens(stem(p)) for p in images]
    needed = _min_id_tokens(image_tokens)
    by_exact = {stem(p).lower(): p for p in images}
    matched: dict[Path, Path] = {}
    for other in others:
        exact = by_exact.get(stem(other).lower())
        if exact is not None:
            candidates = [exact]
        else:
            tokens = _tokens(stem(other))
            scores = [_common_prefix(tokens, t) for t in image_tokens]
            best = max(scores, default=0)
            candidates = [images[i] for i, s in enumerate(scores) if s == best and s >= needed[i]]
        if len(candidates) != 1:
            raise InputError(f"{what} has no image with the same case id" if not candidates else
                             f"{what} matches several images ({', '.join(p.name for p in candidates[:3])})",
                             path=other, fix="give each mask the leading name of its image")
        image = candidates[0]
        if image in matched:
            raise InputError(f"image has two {what}s: {matched[image].name} and {other.name}", path=image)
        matched[image] = other
    for image in images:
        if image not in matched:
            raise InputError(f"image has no {what} in {other_dir}", path=image,
                             fix=f"add its {what} or move the image out of the folder")
    return matched


def build(source: Path, task: str | None = None, images_dir: str | None = None, labels_dir: str | None = None,
          eval_mask_dir: str | None = None, label_map: str | dict | None = None) -> Manifest:
    """Manifest of an image folder + mask folder (segmentation)."""
    if task not in (None, "segmentation"):
        raise InputError(f"the pairs format holds masks, so its task is segmentation, not {task}", path=source)
    found = find_folders(source) if source.is_dir() else None
    image_dir = resolve_option_dir(source, images_dir, "image") if images_dir else (found[0] if found else None)
    label_dir = resolve_option_dir(source, labels_dir, "mask") if labels_dir else (found[1] if found else None)
    if image_dir is None or label_dir is None:
        raise InputError(f"found no image and mask folders: looked for {LOOKS_FOR}", path=source,
                         fix="name them with --images-dir and --labels-dir")
    if eval_mask_dir and str(eval_mask_dir).lower() == "none":
        eval_dir = None
    elif eval_mask_dir:
        eval_dir = resolve_option_dir(source, eval_mask_dir, "evaluation mask")
    else:
        eval_dir = found[2] if found and not images_dir and not labels_dir else None
    images = list_images(image_dir)
    if not images:
        raise InputError("the image folder holds no image files", path=image_dir)
    masks = match_by_id(images, list_images(label_dir), "mask", label_dir)
    eval_masks = match_by_id(images, list_images(eval_dir), "evaluation mask", eval_dir) if eval_dir else {}
    cases = [Case(id=stem(p), images=[str(p)], label=str(masks[p]),
                  eval_mask=str(eval_masks[p]) if p in eval_masks else None) for p in images]
    info = read_header(images[0])
    channels = channel_names_for(info.num_channels)
    mapping = parse_int_map(label_map, "--label-map")
    extra = {"images_dir": str(image_dir), "labels_dir": str(label_dir)}
    if eval_dir:
        extra["eval_mask_dir"] = str(eval_dir)
    return Manifest(name=source.name, task="segmentation", dims=info.ndim, channels=channels,
                    labels=labels_from_mapping(mapping) if mapping else {}, cases=cases,
                    label_mapping=mapping, modality=modality_map(channels), extra=extra)
