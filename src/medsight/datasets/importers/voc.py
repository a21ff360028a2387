"""``voc``: Pascal VOC detection folders (JPEGImages/, Annotations/*.xml, ImageSets/Main/*.txt or splits/*.txt).

Boxes keep the file's numbers: ``[xmin, ymin, xmax, ymax]`` in pixels, x = column, y = row. VOC writes
1-based pixel indices with xmax inclusive; medsight reads a box as the interval [xmin, xmax] in pixel
coordinates, so a box may reach the image's width (BCCD has xmax = 640 in 640-wide images) but not pass
it. Class values are 1..K in the alphabetical order of the class names (0 is background). Boxes with
zero width or height are skipped with a warning naming the file; a box outside its image's size (from
the XML here, from the real image at check time) is an InputError. Images without boxes stay, as
negatives. Subsets come from the split files (train / val / test).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from medsight.datasets.importers.common import channel_names_for, child_dir, list_images, modality_map, stem, warn
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import read_header

FORMAT = "voc"
LOOKS_FOR = "JPEGImages/ and Annotations/*.xml (Pascal VOC)"
SPLIT_NAMES = ("train", "val", "test")


def detect(source: Path) -> bool:
    """True when SOURCE holds Annotations/ and JPEGImages/."""
    return source.is_dir() and (source / "Annotations").is_dir() and (source / "JPEGImages").is_dir()


def read_subsets(source: Path, image_ids: set[str]) -> dict[str, str]:
    """{image id: subset} from ImageSets/Main/{train,val,test}.txt or splits/{train,val,test}.txt; InputError when
    a split file names an image that is not among ``image_ids``."""
    for folder in (source / "ImageSets" / "Main", source / "splits", source / "ImageSets"):
        if not folder.is_dir():
            continue
        subsets: dict[str, str] = {}
        for subset in SPLIT_NAMES:
            path = folder / f"{subset}.txt"
            if path.is_file():
                try:
                    text = path.read_text()
                except (OSError, UnicodeDecodeError) as e:
                    raise InputError(f"is not a readable split file of image ids ({e})", path=path) from None
                for number, line in enumerate(text.split("\n"), start=1):
                    if not line.strip():
                        continue
                    image_id = line.split()[0]
                    if image_id not in image_ids:
                        raise InputError(f"line {number} names image {image_id!r}, which is not in JPEGImages/",
                                         path=path, fix="remove the line or add the image")
                    subsets[image_id] = subset
        if subsets:
            return subsets
    return {}


def _number(obj: ET.Element, tag: str, path: Path) -> float:
    node = obj.find(f"bndbox/{tag}")
    try:
        value = float(node.text)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError):
        raise InputError(f"an object has no readable bndbox/{tag}", path=path) from None
    if not math.isfinite(value):
        raise InputError(f"an object's bndbox/{tag} is {value}, not a finite number", path=path,
                         fix="give the box in pixels")
    return int(value) if value.is_integer() else value


def parse_annotation(path: Path, warnings: list[str]) -> tuple[str | None, tuple[int, int], list[tuple[str, list]]]:
    """(file name, (width, height), [(class name, box)]) of one VOC XML; degenerate boxes dropped."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError(f"is not a readable VOC annotation ({e})", path=path) from None
    filename = (root.findtext("filename") or "").strip() or None
    try:
        size = (int(float(root.findtext("size/width") or 0)), int(float(root.findtext("size/height") or 0)))
    except ValueError:
        size = (0, 0)
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise InputError("an object has no <name>", path=path)
        box = [_number(obj, t, path) for t in ("xmin", "ymin", "xmax", "ymax")]
        if box[2] < box[0] or box[3] < box[1]:
            raise InputError(f"{name} box {box} has xmax < xmin or ymax < ymin", path=path)
        if box[2] == box[0] or box[3] == box[1]:
            warn(warnings, f"{path}: skipped a degenerate {name} box {box} (zero width or height)")
            continue
        width, height = size
        if min(box) < 0 or (width > 0 and box[2] > width) or (height > 0 and box[3] > height):
            raise InputError(f"{name} box {box} lies outside the image ({width} x {height} in the XML)", path=path,
                             fix="fix the box or the <size> of the annotation")
        objects.append((name, box))
    return filename, size, objects


def _image_for(images_dir: Path, by_stem: dict[str, Path], xml: Path, filename: str | None) -> Path:
    if filename and (images_dir / filename).is_file():
        return images_dir / filename
    for key in (stem(filename) if filename else None, xml.stem):
        if key and key in by_stem:
            return by_stem[key]
    raise InputError(f"annotation names image {filename or xml.stem!r}, which is not in {images_dir}", path=xml)


def build(source: Path, task: str | None = None) -> Manifest:
    """Manifest of a Pascal VOC folder (detection)."""
    if task not in (None, "detection"):
        raise InputError(f"VOC annotations hold boxes: a detection task, not {task}", path=source)
    images_dir = child_dir(source, ("JPEGImages",)) or source / "JPEGImages"
    annotations_dir = child_dir(source, ("Annotations",)) or source / "Annotations"
    images = list_images(images_dir)
    if not images:
        raise InputError("JPEGImages/ holds no images", path=images_dir)
    by_stem = {stem(p): p for p in images}
    warnings: list[str] = []
    boxes_of: dict[Path, list[tuple[str, list]]] = {}
    for xml in sorted(annotations_dir.glob("*.xml")):
        filename, _, objects = parse_annotation(xml, warnings)
        boxes_of.setdefault(_image_for(images_dir, by_stem, xml, filename), []).extend(objects)
    names = sorted({name for objects in boxes_of.values() for name, _ in objects})
    value_of = {name: i + 1 for i, name in enumerate(names)}
    subsets = read_subsets(source, set(by_stem))
    cases = [Case(id=stem(p), images=[str(p.resolve())], subset=subsets.get(stem(p)),
                  boxes=[{"box": box, "label": value_of[name]} for name, box in boxes_of.get(p, [])])
             for p in images]
    if subsets and any(c.subset is None for c in cases):
        unlisted = [c.id for c in cases if c.subset is None]
        warn(warnings, f"{source}: {len(unlisted)} images are in no split file (first {unlisted[0]}); "
                       "folds are drawn at random instead of the files' split")
    if not names:
        warn(warnings, f"{annotations_dir}: no boxes found: every image is a negative")
    info = read_header(images[0])
    channels = channel_names_for(info.num_channels)
    return Manifest(name=source.name, task="detection", dims=2, channels=channels,
                    labels={str(v): n for n, v in value_of.items()}, cases=cases, modality=modality_map(channels),
                    extra={"warnings": warnings, "box_convention": "xyxy pixels as in the VOC file, x = column"})
