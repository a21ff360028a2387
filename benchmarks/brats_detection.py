"""BraTS examples, 4 volumes: 3D tumour localisation two ways, leave-one-out, through the real command line.

1. **Slice classification** (``medsight localise``): a 2D CNN labels every slice along each axis as holding
   whole tumour or not; the longest positive run per axis bounds the box. Scored by the IoU of that box with
   the bounding box of the whole-tumour mask.
2. **Dense 3D detection** (``medsight import --task detection``): every whole-tumour component of at least
   ``--min-box-size`` voxels becomes a 3D box (5 boxes in the 4 cases); the 3D CenterNet-style detector
   (U-Net encoder-decoder, centre heatmap + size + offset) trains on 3 volumes and predicts the fourth.
   The pooled out-of-fold ``detections.csv`` is scored by ``medsight evaluate`` (AP@0.5, COCO mAP, FROC and
   CPM with hits at IoU >= 0.5), and each case's best-scoring box by its IoU with the largest tumour box.

Writes benchmarks/results/brats_detection.json.

    python benchmarks/brats_detection.py                       # 8 min a detection fold (~45 min in all)
    python benchmarks/brats_detection.py --budget-minutes 1 --localise-epochs 1   # a smoke run, not a result
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np

from _common import SHARED_DATA, format_table, load_average, uptime, write_results
from _segmentation import held_out_subset, medsight, read_log

BRATS = SHARED_DATA / "brats_examples"
WHOLE_TUMOUR = "1,2,3,4"


def box_iou_3d(a: list[float], b: list[float]) -> float:
    """IoU of two boxes ``[x0, y0, z0, x1, y1, z1]``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    inter = np.prod(np.clip(np.minimum(a[3:], b[3:]) - np.maximum(a[:3], b[:3]), 0, None))
    union = np.prod(a[3:] - a[:3]) + np.prod(b[3:] - b[:3]) - inter
    return float(inter / union) if union > 0 else 0.0


def slice_classification(work: Path, epochs: int, threads: int) -> dict:
    """``medsight localise`` of the whole tumour, leave-one-out; its localise.json figures."""
    dataset, out = work / "seg_dataset", work / "localise"
    for d in (dataset, out):
        shutil.rmtree(d, ignore_errors=True)
    medsight("import", str(BRATS), str(dataset), "--format", "cases", "--folds", "4",
             "--regions", f"whole_tumour={WHOLE_TUMOUR}")
    seconds = medsight("localise", str(dataset), "--structure", "whole_tumour", "-o", str(out), "--epochs",
                       str(epochs), "--threads", str(threads))
    result = json.loads((out / "localise.json").read_text())
    return {"wall_seconds": round(seconds, 1), "epochs": epochs, "result": result}


def top_box_iou(detections: Path, manifest: dict) -> dict[str, dict]:
    """Per case: the best-scoring predicted box, the largest reference box, and their IoU."""
    best: dict[str, tuple[float, list[float]]] = {}
    with open(detections, newline="") as f:
        for r in csv.DictReader(f):
            box = [float(r[k]) for k in ("x0", "y0", "z0", "x1", "y1", "z1")]
            if r["case"] not in best or float(r["score"]) > best[r["case"]][0]:
                best[r["case"]] = (float(r["score"]), box)
    out = {}
    for case in manifest["cases"]:
        boxes = [b["box"] for b in case.get("boxes", [])]
        if not boxes or case["id"] not in best:
            continue
        largest = max(boxes, key=lambda b: np.prod(np.subtract(b[3:], b[:3])))
        score, box = best[case["id"]]
        out[case["id"]] = {"top_score": round(score, 4), "top_box": [round(v, 1) for v in box],
                           "largest_true_box": largest, "iou": round(box_iou_3d(box, largest), 4)}
    return out


def pool_detections(parts: list[Path], out: Path) -> None:
    """One detections.csv of the folds' out-of-fold predictions (each ``predict`` writes its own cases)."""
    rows, fields = [], None
    for part in parts:
        with open(part, newline="") as f:
            reader = csv.DictReader(f)
            fields = fields or reader.fieldnames
            rows += list(reader)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def dense_detection(work: Path, budget: float, threads: int, min_box_size: int) -> dict:
    """Import as detection, plan, train and predict each leave-one-out fold, evaluate the pooled predictions."""
    dataset, predictions = work / "det_dataset", work / "det_predictions"
    for d in (dataset, predictions):
        shutil.rmtree(d, ignore_errors=True)
    medsight("import", str(BRATS), str(dataset), "--format", "cases", "--task", "detection", "--folds", "4",
             "--regions", f"tumour={WHOLE_TUMOUR}", "--min-box-size", str(min_box_size))
    manifest = json.loads((dataset / "manifest.json").read_text())
    plan_s = medsight("plan", str(dataset), "--budget-minutes", str(budget), threads=threads)
    plan = json.loads((dataset / "plan.json").read_text())
    folds = []
    for k in range(len(manifest["splits"])):
        run = work / f"det_run_fold{k}"
        shutil.rmtree(run, ignore_errors=True)
        ids = held_out_subset(dataset, k, work / f"det_heldout_fold{k}")
        train_s = medsight("train", str(dataset), "--fold", str(k), "--out", str(run), threads=threads)
        predict_s = medsight("predict", str(run), str(work / f"det_heldout_fold{k}"), "-o",
                             str(predictions / f"fold_{k}"), threads=threads)
        log = read_log(run / f"fold_{k}" / "log.jsonl")
        folds.append({"fold": k, "cases": ids, "train_seconds": round(train_s, 1),
                      "predict_seconds": round(predict_s, 1), "epochs": len(log),
                      "final_train_loss": log[-1].get("train_loss") if log else None})
    pool_detections([predictions / f"fold_{f['fold']}" / "detections.csv" for f in folds],
                    predictions / "detections.csv")
    medsight("evaluate", str(predictions), str(dataset), "-o", str(work / "det_metrics.json"))
    metrics = json.loads((work / "det_metrics.json").read_text())
    per_case = top_box_iou(predictions / "detections.csv", manifest)
    return {"boxes": {c["id"]: c.get("boxes", []) for c in manifest["cases"]},
            "import_warnings": manifest.get("extra", {}).get("warnings", []),
            "plan_seconds": round(plan_s, 1),
            "plan": {k: plan.get(k) for k in ("target_spacing", "resolution_scale", "patch_size", "whole_image",
                                              "batch_size", "epochs", "steps_per_epoch", "measured_step_seconds")},
            "network": {k: plan["network"].get(k) for k in ("encoder", "features", "strides")},
            "folds": folds, "summary": metrics["summary"],
            "froc": metrics["per_class"]["tumour"]["froc"], "per_case": per_case,
            "mean_top_box_iou": round(float(np.mean([v["iou"] for v in per_case.values()])), 4) if per_case else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="detection training budget per fold")
    parser.add_argument("--localise-epochs", type=int, default=8)
    parser.add_argument("--min-box-size", type=int, default=20)
    parser.add_argument("--skip-localise", action="store_true", help="only the dense detector")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medsight_brats_det")
    args = parser.parse_args()
    if not BRATS.is_dir():
        raise SystemExit(f"BraTS examples not found at {BRATS}")
    args.work.mkdir(parents=True, exist_ok=True)
    payload = {"data": str(BRATS), "protocol": "leave-one-out over the 4 cases", "threads": args.threads,
               "budget_minutes_per_fold": args.budget_minutes, "uptime_at_start": uptime(),
               "load_at_start": load_average()}
    if not args.skip_localise:
        payload["slice_classification"] = slice_classification(args.work, args.localise_epochs, args.threads)
    payload["dense_detection"] = dense_detection(args.work, args.budget_minutes, args.threads, args.min_box_size)
    payload["load_at_end"] = load_average()
    path = write_results("brats_detection", payload)
    det = payload["dense_detection"]
    rows = [["dense 3D detection", det["mean_top_box_iou"], det["summary"]["ap50"]["value"],
             det["summary"]["cpm"]["value"], sum(f["train_seconds"] for f in det["folds"])]]
    if "slice_classification" in payload:
        loc = payload["slice_classification"]
        rows.insert(0, ["slice classification", loc["result"].get("mean_iou"), "-", "-", loc["wall_seconds"]])
    print(f"\nresults written to {path}")
    print(format_table(["method", "box IoU (mean)", "AP@0.5", "CPM", "seconds"], rows))


if __name__ == "__main__":
    main()
