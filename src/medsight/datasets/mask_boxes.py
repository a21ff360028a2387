"""Boxes from label masks: each connected component of a class (or of a region) becomes one detection box.

A segmentation set imported with ``--task detection`` turns into a detection set this way (nnDetection
makes its boxes from instance masks the same way): BraTS whole-tumour components become 3D tumour boxes.
Components are found with full connectivity (8 neighbours in 2D, 26 in 3D), so a lesion touching itself
only diagonally stays one object. Components under ``min_size`` voxels (annotation specks) are skipped
and counted, so the import can say how many.

Boxes follow the manifest's convention: 2D ``[x0, y0, x1, y1]`` with x = column, y = row; 3D
``[x0, y0, z0, x1, y1, z1]`` in voxel indices of the array axes; the low corner is the first voxel, the
high corner one past the last (``hi - lo`` is the extent in voxels).

Example:
    >>> import numpy as np
    >>> mask = np.zeros((6, 8), np.int16); mask[1:3, 2:6] = 1
    >>> component_boxes(mask, {1: [1]}, min_size=1)
    ([{'box': [2, 1, 6, 3], 'label': 1}], 0)
"""
from __future__ import annotations

import numpy as np

#: components smaller than this many voxels (pixels in 2D) are specks, not objects (default of --min-box-size)
DEFAULT_MIN_SIZE = 20


def component_boxes(mask: np.ndarray, classes: dict[int, list[int]], min_size: int = DEFAULT_MIN_SIZE
                    ) -> tuple[list[dict], int]:
    """(boxes, number of skipped components) of a (*spatial) label mask.

    ``classes`` maps a box class value to the mask values that make it (``{1: [1, 2, 3, 4]}`` for BraTS
    whole-tumour boxes; ``{v: [v]}`` for one class per label). Boxes are listed class by class, largest
    component first.
    """
    from scipy import ndimage

    nd = mask.ndim
    structure = ndimage.generate_binary_structure(nd, nd)
    boxes: list[dict] = []
    skipped = 0
    for value, members in classes.items():
        labelled, n = ndimage.label(np.isin(mask, members), structure=structure)
        if not n:
            continue
        sizes = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
        objects = ndimage.find_objects(labelled)
        for index in np.argsort(-sizes, kind="stable"):
            if sizes[index] < min_size:
                skipped += 1
                continue
            lo = [int(s.start) for s in objects[index]]
            hi = [int(s.stop) for s in objects[index]]
            if nd == 2:  # array axes (row, column) -> (x = column, y = row)
                lo, hi = lo[::-1], hi[::-1]
            boxes.append({"box": lo + hi, "label": int(value)})
    return boxes, skipped


def box_classes(manifest, regions: dict[str, list[int]] | None = None) -> tuple[dict[int, list[int]], dict[str, str]]:
    """({box class value: mask values}, {class value: name}) of a segmentation manifest: one class per
    region when ``regions`` are given (in their order), else one per foreground label."""
    if regions:
        classes = {i + 1: [int(v) for v in values] for i, values in enumerate(regions.values())}
        names = {str(i + 1): str(name) for i, name in enumerate(regions)}
    else:
        values = [v for v in manifest.label_values if v != 0]
        classes = {v: [v] for v in values}
        names = {str(v): manifest.labels[str(v)] for v in values}
    return classes, {"0": "background", **names}


def convert_to_detection(manifest, regions: dict[str, list[int]] | None = None, min_size: int = DEFAULT_MIN_SIZE,
                         workers: int = 2, progress: bool = True) -> list[str]:
    """Turn a checked segmentation manifest into a detection manifest in place: every connected component
    of each class (or region) of a case's mask becomes a box; returns the import's warnings."""
    from concurrent.futures import ThreadPoolExecutor

    from medsight.datasets.loading import read_case_label
    from medsight.progress import progress as progress_bar

    if manifest.task != "segmentation":
        raise ValueError(f"boxes come from label masks; this is a {manifest.task} dataset")
    classes, names = box_classes(manifest, regions)

    def one(case):
        return component_boxes(read_case_label(case, manifest).array[0], classes, min_size)

    bar = progress_bar(total=len(manifest.cases), desc="boxes from masks", unit="case", requested=progress)
    with ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix="medsight-boxes") as pool:
        results = []
        for result in pool.map(one, manifest.cases):
            results.append(result)
            bar.update()
    bar.close()
    skipped = 0
    for case, (boxes, n_skipped) in zip(manifest.cases, results):
        case.boxes, case.label, case.eval_mask = boxes, None, None
        skipped += n_skipped
    manifest.task, manifest.labels, manifest.label_mapping, manifest.regions = "detection", names, {}, {}
    manifest.extra["boxes_from_masks"] = {"classes": {names[str(k)]: v for k, v in classes.items()},
                                          "min_size": int(min_size), "connectivity": "full"}
    n_boxes = sum(len(c.boxes) for c in manifest.cases)
    warnings = []
    if skipped:
        warnings.append(f"{skipped} mask component(s) under {min_size} voxels were not made into boxes "
                        f"({n_boxes} boxes kept); --min-box-size changes the limit")
    if not n_boxes:
        warnings.append("the masks gave no boxes: every case trains as a negative")
    return warnings
