"""Shared runner of the BCCD image-label studies (`medsight weak`, `medsight mil`): import, run, read the JSON."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from _common import SHARED_DATA, load_average
from _segmentation import medsight


def run_bccd_study(command: str, result_file: str, *options: str, threads: int) -> dict:
    """Import BCCD (VOC, its own train/val split), run ``medsight COMMAND DS --positive-class Platelets -o OUT
    OPTIONS --threads N``; the study's JSON with the wall seconds and the load around the run."""
    with tempfile.TemporaryDirectory(prefix=f"medsight_{command}_") as tmp:
        ds, out = Path(tmp) / "ds", Path(tmp) / "out"
        medsight("import", str(SHARED_DATA / "bccd"), str(ds), "--format", "voc")
        load_before = load_average()
        seconds = medsight(command, str(ds), "--positive-class", "Platelets", "-o", str(out), *options,
                           "--threads", str(threads), threads=threads)
        result = json.loads((out / result_file).read_text())
    return {"data": str(SHARED_DATA / "bccd"), "split": "splits/train.txt -> splits/val.txt", "threads": threads,
            "load_before": load_before, "load_after": load_average(), "wall_seconds": round(seconds, 1),
            "result": result}
