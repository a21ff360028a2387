"""The three jobs behind one interface; ``get_task(name)`` returns one."""
from __future__ import annotations

from medsight.errors import InputError
from medsight.tasks.base import Task


def get_task(name: str) -> Task:
    """The Task object for ``classification``, ``segmentation`` or ``detection``."""
    if name == "classification":
        from medsight.tasks.classification import ClassificationTask

        return ClassificationTask()
    if name == "segmentation":
        from medsight.tasks.segmentation import SegmentationTask

        return SegmentationTask()
    if name == "detection":
        from medsight.tasks.detection import DetectionTask

        return DetectionTask()
    raise InputError(f"unknown task {name!r}", fix="use classification, detection or segmentation")
