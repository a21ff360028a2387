"""The public Python API: one function per CLI command (``medsight <command>`` is a thin skin over these)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medsight.datasets.loading import case_signature
from medsight.datasets.manifest import Manifest, atomic_write_text
from medsight.device import resolve_device, set_threads
from medsight.errors import CheckpointError, InputError, as_list, output_folder, positive
from medsight.io.formats import KNOWN_EXTENSIONS
from medsight.locks import one_writer
from medsight.planning.fingerprint import FINGERPRINT_VERSION, compute_fingerprint, load_fingerprint, save_fingerprint
from medsight.planning.plan import PLAN_NAME, load_plan, make_plan, plan_hash, save_plan, summary_table
from medsight.preprocessing.cache import CachedCases, cache_dir, preprocess_dataset
from medsight.tasks import get_task
from medsight.progress import log as _log
from medsight.tempfiles import append_line, remove_stale_temporaries

RUN_INFO = "run.json"
#: ``predict``'s record of finished cases in its output folder (``--continue`` skips them)
PREDICT_STATE = ".medsight_predict.jsonl"


# -- import -------------------------------------------------------------------------------------
def import_dataset(source: str | Path, dataset_dir: str | Path, format: str = "auto", task: str | None = None,
                   **options) -> Manifest:
    """Import SOURCE (a folder or file in a known layout) as a dataset in DATASET_DIR; every file is checked.

    Example:
        >>> import_dataset("../shared/data/medmnist/breastmnist.npz", "work/breast")  # doctest: +SKIP
    """
    from medsight.datasets import import_dataset as _import

    if source is None or dataset_dir is None:
        raise InputError("import needs a SOURCE and a DATASET_DIR")
    output_folder(dataset_dir, not_holding={"run.json": "a run", "predictions.csv": "predictions",
                                            "volumes.csv": "predictions"})
    with one_writer(dataset_dir, "this dataset", fix="wait for it to finish, or import into another folder"):
        return _import(source, dataset_dir, format=format, task=task, **options)


# -- plan ---------------------------------------------------------------------------------------
def _signature_of(manifest: Manifest) -> str:
    h = hashlib.sha1()
    for c in manifest.cases:
        h.update(f"{c.id}:{case_signature(c)};".encode())
    return h.hexdigest()[:16]


def fingerprint(dataset_dir: str | Path, workers: int | None = None, progress: bool = True) -> dict:
    """The dataset's fingerprint, recomputed when the data changed since it was made or an older medsight made it."""
    manifest = Manifest.load(dataset_dir)
    sig = _signature_of(manifest)
    fp = load_fingerprint(dataset_dir)
    if fp is None or fp.get("signature") != sig or fp.get("version") != FINGERPRINT_VERSION:
        fp = compute_fingerprint(manifest, workers, progress)
        fp["signature"] = sig
        save_fingerprint(fp, dataset_dir)
    return fp


def plan(dataset_dir: str | Path, budget_minutes: float | None = None, device: str | None = None,
         quiet: bool = False, workers: int | None = None, measure: bool = True) -> dict:
    """Fingerprint the dataset and write ``DATASET_DIR/plan.json``; print a summary table.

    ``measure=False`` skips timing a training step (epochs then default to 1; for quick edits and tests).
    """
    positive(budget_minutes, "budget_minutes")
    positive(workers, "workers", integer=True, minimum=1)
    if dataset_dir is None:
        raise InputError("plan needs a DATASET_DIR")
    manifest = Manifest.load(dataset_dir)
    with one_writer(dataset_dir, "the dataset's plan", wait=True):
        fp = fingerprint(dataset_dir, workers, progress=not quiet)
        dev = resolve_device(device)
        p = make_plan(manifest, fp, budget_minutes=budget_minutes, device=dev, measure=measure)
        p["fingerprint_signature"] = fp["signature"]
        if manifest.extra.get("covariates"):  # what the import held when planned (the plan's own may be removed)
            p["covariates_imported"] = dict(manifest.extra["covariates"])
        save_plan(p, dataset_dir)
    _log(f"plan written to {Path(dataset_dir) / PLAN_NAME}\n{summary_table(p)}", quiet)
    return p


def ensure_plan(dataset_dir: str | Path, budget_minutes: float | None = None, device: str | None = None,
                quiet: bool = False) -> dict:
    """The dataset's plan: made when missing, remade when the data changed or another budget is asked for.

    Processes planning one dataset at once (two folds started together) take turns: the later one uses the
    plan the first one made.
    """
    manifest = Manifest.load(dataset_dir)
    with one_writer(dataset_dir, "the dataset's plan", wait=True):
        return _current_plan(dataset_dir, manifest, budget_minutes, device, quiet)


def _current_plan(dataset_dir: str | Path, manifest: Manifest, budget_minutes: float | None, device: str | None,
                  quiet: bool) -> dict:
    path = Path(dataset_dir) / PLAN_NAME
    if path.is_file():
        p = load_plan(path)
        fp = fingerprint(dataset_dir, progress=not quiet)
        # covariates are not in the cases' signatures: an import that added or changed them replans
        data_same = (p.get("fingerprint_signature") == fp["signature"]
                     and p.get("covariates_imported") == (manifest.extra.get("covariates") or None))
        budget_same = budget_minutes is None or float(budget_minutes) == float(p.get("budget_minutes", -1))
        if data_same and budget_same and p.get("task") == manifest.task:
            return p
        if data_same and not budget_same and p.get("measured_step_seconds"):
            from medsight.planning.budget import schedule_epochs

            p["budget_minutes"] = float(budget_minutes)
            schedule_epochs(p, float(budget_minutes))
            save_plan(p, dataset_dir)
            return p
        _log("the data changed since the plan was made: planning again", quiet)
    return plan(dataset_dir, budget_minutes, device, quiet=quiet)


# -- preprocess ---------------------------------------------------------------------------------
def preprocess(dataset_dir: str | Path, workers: int | None = None, quiet: bool = False) -> Path:
    """Preprocess every case the plan has not cached yet; return the cache folder."""
    positive(workers, "workers", integer=True, minimum=1)
    manifest = Manifest.load(dataset_dir)
    p = ensure_plan(dataset_dir, quiet=quiet)
    return preprocess_dataset(dataset_dir, manifest, p, workers, progress=not quiet)


# -- train --------------------------------------------------------------------------------------
def _fold_dir(run_dir: Path, fold: int | str) -> Path:
    return run_dir / f"fold_{fold}"


#: folders a run must not be written into: a dataset's, or predictions'
NOT_A_RUN = {"manifest.json": "a dataset", "predictions.csv": "predictions", "volumes.csv": "predictions"}
#: folders predictions must not be written into: a dataset's, or a run's
NOT_PREDICTIONS = {"manifest.json": "a dataset", "run.json": "a run"}


def training_fold(fold) -> int | str:
    """``fold`` as a fold number (0, 1, ..., also written as text), ``"all"`` or ``"every"``; InputError else."""
    if fold in ("all", "every"):
        return fold
    if isinstance(fold, str) and fold.isdigit():
        return int(fold)
    if isinstance(fold, int) and not isinstance(fold, bool) and fold >= 0:
        return fold
    raise InputError(f"a fold is a number (0, 1, ...), 'all' or 'every', got {fold!r}")


def train(dataset_dir: str | Path, fold: int | str = 0, out: str | Path | None = None, resume: bool = False,
          epochs: int | None = None, budget_minutes: float | None = None, device: str | None = None,
          threads: int | None = None, quiet: bool = False) -> Path:
    """Train fold ``fold`` of the dataset (``"all"``: one model on every case; ``"every"``: fold 0, 1, ... in
    turn); plans and preprocesses first when needed.

    Returns the run folder (default ``DATASET_DIR/run``) holding ``plan.json``, ``run.json`` and ``fold_K/``.
    """
    from medsight.training.checkpoint import load_checkpoint
    from medsight.training.distributed import barrier, finish_distributed, init_distributed, process_device
    from medsight.training.loop import FINAL, LATEST, train_fold

    fold = training_fold(fold)
    positive(epochs, "epochs", integer=True, minimum=1)
    positive(budget_minutes, "budget_minutes")
    positive(threads, "threads", integer=True, minimum=1)
    dataset_dir = Path(dataset_dir).resolve()
    run_dir = output_folder(Path(out).resolve() if out else dataset_dir / "run", not_holding=NOT_A_RUN)
    manifest = Manifest.load(dataset_dir)
    if fold == "every" and not manifest.splits:
        raise InputError("the dataset has no folds to train in turn", path=dataset_dir,
                         fix="import it again with --folds 5, or train --fold all")
    dev = resolve_device(device)
    set_threads(threads)
    dev = process_device(dev, torch.cuda.device_count() if dev.type == "cuda" else 0)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    folds = list(range(len(manifest.splits))) if fold == "every" else [fold]
    for k in folds:  # an unknown fold is refused before anything is written
        manifest.fold_cases(k)
    held = ExitStack()
    ctx = init_distributed(dev)
    finished = False
    try:
        quiet = quiet or not ctx.is_main
        if ctx.is_main:  # the same fold trained twice at once would interleave its checkpoints: refused now
            for k in folds:
                held.enter_context(one_writer(_fold_dir(run_dir, k), f"fold {k}",
                                              fix="wait for it to finish, or train into another folder with --out"))
        if resume and (run_dir / PLAN_NAME).is_file():
            p = load_plan(run_dir)
        else:
            if ctx.is_main:  # one process plans and preprocesses; the others wait, then read its plan
                ensure_plan(dataset_dir, budget_minutes, device, quiet=quiet)
            barrier(ctx)
            p = load_plan(dataset_dir)
            if epochs is not None:
                p = {**p, "epochs": int(epochs)}
        if ctx.is_main:
            preprocess_dataset(dataset_dir, manifest, p, progress=not quiet)
        barrier(ctx)
        task = get_task(p["task"])
        cache = cache_dir(dataset_dir, p)
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_plan(p, run_dir)
            info = {"dataset_dir": str(dataset_dir), "task": p["task"], "plan_hash": plan_hash(p),
                    "manifest": {k: v for k, v in manifest.to_json().items() if k not in ("cases", "splits")}}
            atomic_write_text(run_dir / RUN_INFO, json.dumps(info, indent=1))
        for k in folds:
            train_cases, val_cases = manifest.fold_cases(k)
            fold_dir = _fold_dir(run_dir, k)
            fold_resume = resume
            if resume and (fold_dir / FINAL).is_file() and (fold_dir / "decisions.json").is_file():
                load_checkpoint(fold_dir / FINAL, plan_hash(p))  # kept only when intact and of this plan
                _log(f"fold {k}: finished before, kept as it is", quiet)
                continue
            if resume and fold == "every" and not (fold_dir / LATEST).is_file():
                fold_resume = False  # a fold the interrupted run never began
            t0 = time.perf_counter()
            train_data = CachedCases(cache, [c.id for c in train_cases], {c.id: c.covariates for c in train_cases})
            val_data = (CachedCases(cache, [c.id for c in val_cases], {c.id: c.covariates for c in val_cases})
                        if val_cases else None)
            final = train_fold(task, p, train_data, val_data, fold_dir, dev, resume=fold_resume, ctx=ctx,
                               progress=not quiet)
            if ctx.is_main:
                model = task.build_network(p).to(dev)
                model.load_state_dict(load_checkpoint(final, plan_hash(p))["model"])
                decisions = task.fit_companions(p, train_data)
                if val_data is not None:
                    decisions.update(task.finalize(model, val_data, p, dev, fold_dir, companions=decisions))
                decisions["train_seconds"] = round(time.perf_counter() - t0, 1)
                decisions["validation_cases"] = [c.id for c in val_cases]
                atomic_write_text(fold_dir / "decisions.json", json.dumps(decisions, indent=1))
                _log(f"fold {k}: trained {p['epochs']} epochs in {decisions['train_seconds']} s -> {final}", quiet)
        finished = True
    finally:  # every process leaves the group, after the others when all went well
        held.close()
        finish_distributed(ctx, wait=finished)
    return run_dir


# -- predict ------------------------------------------------------------------------------------
#: every image extension medsight reads, longest first (``.nii.gz`` before ``.nii``); the readers' own list
_EXTENSIONS = tuple(sorted(KNOWN_EXTENSIONS, key=len, reverse=True))


def split_extension(name: str) -> tuple[str, str]:
    """``scan_0003.nii.gz`` -> (``scan_0003``, ``.nii.gz``); a name without a known extension keeps it all."""
    low = name.lower()
    for ext in _EXTENSIONS:
        if low.endswith(ext):
            return name[: -len(ext)], name[len(name) - len(ext):]
    return name, ""


def case_name(path: str | Path, strip_channel_suffix: bool) -> tuple[str, str]:
    """The case name of an input file (DESIGN.md's rule) and its extension."""
    stem, ext = split_extension(Path(path).name)
    if strip_channel_suffix and len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit():
        stem = stem[:-5]
    return stem, ext


def _resolve_inputs(inputs: Sequence[str | Path], strip: bool, dims: int | None = None) -> list[dict]:
    """Input cases: dataset folders give their cases; folders give their image files; files are cases.

    For a 3D run (``dims`` 3) a folder holding one DICOM series of several slices is one case named after
    the folder (its mask is written as ``.nii.gz`` on the series' grid), and a folder holding no image
    files gives one case per immediate subfolder that holds DICOM files. Single-file DICOM images stay one
    case each (as every ``.dcm`` file does for a 2D run). A folder mixing several series, or a series whose
    slices are not evenly spaced, is refused here, before anything is predicted or written, as are two inputs
    of one case name from different places (:func:`_add_case`).
    """
    from medsight.datasets.manifest import MANIFEST_NAME

    cases: dict[str, dict] = {}
    for inp in inputs:
        path = Path(inp)
        if (path / MANIFEST_NAME).is_file():
            m = Manifest.load(path)
            for c in m.cases:
                ext = split_extension(Path(c.images[0].split("::")[0]).name)[1]
                _add_case(cases, c.id, {"case": c.id, "files": list(c.images),
                                        "extension": ".nii.gz" if ext == ".npz" else ext,
                                        "covariates": dict(c.covariates)}, origin=f"dataset {path.resolve()}")
            continue
        series: list[Path] = []
        if path.is_dir():
            files, series = _folder_inputs(path, dims)
            if dims == 3 and not files and not series:
                for sub in sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")):
                    if _dicom_files(sub):
                        sub_files, sub_series = _folder_inputs(sub, dims)
                        files += sub_files
                        series += sub_series
            if not files and not series:
                raise InputError("no image files in this folder", path=path)
        elif path.is_file() or "::" in str(path):
            files = [path]
        else:
            raise InputError("no such file or folder", path=path)
        for folder in series:  # extension '' (no image format): the mask is written as .nii.gz
            _add_case(cases, folder.name, {"case": folder.name, "files": [str(folder)], "extension": ""},
                      origin=f"series {folder.resolve()}")
        for f in files:
            name, ext = case_name(f, strip)
            # channel files of one case (DESIGN.md's _0000 suffix) lie in one folder; any other repeat is a clash
            origin = f"channels in {Path(f).resolve().parent}" if strip else f"file {Path(f).resolve()}"
            _add_case(cases, name, {"case": name, "files": [str(f)], "extension": ext}, origin=origin)
    return [{k: v for k, v in c.items() if k != "origin"} for c in cases.values()]


def _add_case(cases: dict[str, dict], name: str, entry: dict, origin: str) -> None:
    """Add an input case, or a channel file to the case of that name from the same ``origin``; two inputs
    of one case name from different places (same-named files or series folders of two parents, a dataset's
    case and a file) are refused: their outputs would overwrite each other. A file given twice counts once."""
    known = cases.get(name)
    if known is None:
        cases[name] = {**entry, "origin": origin}
        return
    if known["origin"] == origin:
        seen = {os.path.abspath(f) for f in known["files"]}
        known["files"] += [f for f in entry["files"] if os.path.abspath(f) not in seen]
        return
    raise InputError(f"two inputs give the case name {name!r} ({known['files'][0]} and {entry['files'][0]}): their "
                     "outputs would overwrite each other", path=entry["files"][0],
                     fix="predict them into separate output folders, or rename one")


def _dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly in ``folder``, by the rule the DICOM importer uses (``io.formats.is_dicom_file``)."""
    from medsight.io.formats import is_dicom_file

    return [f for f in sorted(folder.iterdir()) if not f.name.startswith(".") and is_dicom_file(f)]


def _folder_inputs(folder: Path, dims: int | None) -> tuple[list[Path], list[Path]]:
    """A folder's input image files and, for a 3D run, the folder itself when it holds one DICOM series of
    slices placed in space (then its DICOM files are not cases of their own). Checked: one series, evenly
    spaced. DICOM images without slice positions (X-rays) stay one case a file, even when they share a series."""
    from medsight.io.dicom import check_slice_spacing, is_volume_series, list_dicom_series

    files = sorted(p for p in folder.iterdir() if p.is_file() and split_extension(p.name)[1])
    dicom = _dicom_files(folder) if dims == 3 else []
    if not dicom:
        return files, []
    series = list_dicom_series(folder)
    if not any(is_volume_series(s) for s in series):  # single images (X-rays, multi-frame files): one case each
        return files, []
    if len(series) > 1:  # as `medsight import --format dicom` refuses it
        raise InputError(f"holds {len(series)} DICOM series; a case needs one series per folder: "
                         + "; ".join(s.summary() for s in series), path=folder, fix="give each series its own folder")
    check_slice_spacing(folder, series[0])
    in_series = {Path(f).resolve() for f in series[0].files} | {f.resolve() for f in dicom}
    return [f for f in files if f.resolve() not in in_series], [folder]


def load_run(run_dir: str | Path, device: torch.device, folds: Sequence[int | str] | None = None):
    """The plan, task, fold models and their decisions of a trained run."""
    from medsight.training.checkpoint import load_checkpoint
    from medsight.training.loop import FINAL

    run_dir = Path(run_dir)
    if not (run_dir / RUN_INFO).is_file():
        raise InputError("not a medsight run folder (no run.json)", path=run_dir, fix="give the folder `medsight train` wrote")
    info = json.loads((run_dir / RUN_INFO).read_text())
    p = load_plan(run_dir)
    task = get_task(p["task"])
    fold_dirs = sorted(d for d in run_dir.glob("fold_*") if (d / FINAL).is_file())
    if folds is not None:
        untrained = [str(f) for f in folds if f"fold_{f}" not in {d.name for d in fold_dirs}]
        if untrained:
            raise CheckpointError(f"no trained fold {', '.join(untrained)} here (trained: "
                                  f"{', '.join(d.name[5:] for d in fold_dirs) or 'none'})", path=run_dir,
                                  fix="name trained folds, or leave the folds out to ensemble them all")
        fold_dirs = [d for d in fold_dirs if d.name[5:] in {str(f) for f in folds}]
    if not fold_dirs:
        raise CheckpointError("no trained fold here (no fold_*/checkpoint_final.pt)", path=run_dir,
                              fix="finish `medsight train` first, or --resume it")
    info = {**info, "predicting_folds": [d.name[5:] for d in fold_dirs]}  # the ensemble ``predict`` records
    models, decisions = [], []
    for d in fold_dirs:
        model = task.build_network(p)
        model.load_state_dict(load_checkpoint(d / FINAL, plan_hash(p))["model"])
        models.append(model.to(device).eval())
        dec = d / "decisions.json"
        decisions.append(json.loads(dec.read_text()) if dec.is_file() else {})
    return info, p, task, models, _merge_decisions(decisions)


def _merge_decisions(decisions: list[dict]) -> dict:
    """One set of decisions for an ensemble: thresholds averaged, post-processing kept where all folds agree
    (:func:`medsight.tasks.postprocessing.merge`), any other decision taken from the first fold."""
    from medsight.tasks.postprocessing import merge

    merged: dict = {k: v for k, v in (decisions[0] if decisions else {}).items()
                    if k not in ("threshold", "largest_component", "largest_components", "min_component_size",
                                 "validation_cases", "train_seconds", "covariate_model", "validation_auc_images",
                                 "validation_auc_with_covariates")}
    th = [d["threshold"] for d in decisions if "threshold" in d]
    if th:
        merged["threshold"] = float(np.mean(th))
    covariate_models = [d["covariate_model"] for d in decisions if d.get("covariate_model")]
    if covariate_models:  # every fold's: their probabilities are averaged, as the networks' are
        merged["covariate_models"] = covariate_models
    merged.update(merge(decisions))
    return merged


def predict(run_dir: str | Path, inputs: Sequence[str | Path], out_dir: str | Path, continue_: bool = False,
            save_probabilities: bool = False, device: str | None = None, threads: int | None = None,
            folds: Sequence[int | str] | None = None, covariates: str | Path | None = None,
            quiet: bool = False, test_time_augmentation: bool = True, overlap: float | None = None) -> Path:
    """Predict every input case with the run's folds (ensembled) into OUT_DIR, as DESIGN.md's contract says.

    A classifier trained with clinical covariates fuses them into each case's probabilities: a dataset
    folder's cases bring their own, ``covariates`` (a CSV with a ``case`` column and one column per
    covariate) gives them for any case it names, ahead of a dataset's; a value not given counts as missing.
    ``folds`` (numbers or "all") predicts with those trained folds only, ensembled; default every one.
    ``test_time_augmentation=False`` predicts without the plan's test-time mirroring (one pass instead of
    up to 8: that much faster, usually a little less accurate); ``overlap`` replaces the plan's overlap of
    sliding windows (0 <= overlap < 1; less overlap, fewer windows).
    """
    inputs, folds = as_list(inputs, "inputs"), as_list(folds, "folds")
    if not inputs:
        raise InputError("nothing to predict: no inputs given", fix="give image files, folders or a dataset")
    positive(threads, "threads", integer=True, minimum=1)
    overlap = window_overlap(overlap)
    out_dir = output_folder(out_dir, not_holding=NOT_PREDICTIONS)
    dev = resolve_device(device)
    set_threads(threads)
    info, p, task, models, decisions = load_run(run_dir, dev, folds)
    plans_own = {"test_time_augmentation": True, "overlap": p.get("inference", {}).get("overlap"),
                 "folds": info["predicting_folds"]}
    p = task.with_inference_options(p, bool(test_time_augmentation), overlap)
    settings = {**plans_own, "test_time_augmentation": bool(test_time_augmentation),
                "overlap": p.get("inference", {}).get("overlap")}
    strip = bool(info["manifest"].get("strip_channel_suffix"))
    cases = _resolve_inputs(inputs, strip, p["dims"])
    _attach_covariates(cases, p, covariates)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, list[dict]] = {}
    try:
        with one_writer(out_dir, "this predictions folder", fix="wait for it to finish, or predict into another folder"):
            _predict_into(out_dir, cases, continue_, done, p, task, models, decisions, dev, save_probabilities,
                          quiet, settings, plans_own)
    except BaseException:
        if created and not done:  # refused before any case was written: leave no empty folder behind
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    _log(f"predictions of {len(cases)} case(s) written to {out_dir}", quiet)
    return out_dir


def window_overlap(overlap) -> float | None:
    """``overlap`` unless it is not a fraction of the window in [0, 1); None passes (the plan's applies)."""
    if overlap is None:
        return None
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise InputError(f"overlap must be a fraction of the window, at least 0 and under 1, got {overlap!r}",
                         fix="nnU-Net and medsight plans use 0.5; 0.25 predicts faster")
    return float(overlap)


def _attach_covariates(cases: list[dict], p: dict, csv_path: str | Path | None) -> None:
    """Each case's covariate values for a run trained with them (a CSV's ahead of a dataset's); a warning
    counts the cases with none. A CSV for a run without covariates is refused."""
    from medsight.classification.covariates import read_covariate_csv

    kinds = p.get("covariates")
    if not kinds:
        if csv_path is not None:
            raise InputError("the run was trained without clinical covariates: nothing to fuse them with",
                             path=csv_path, fix="leave --covariates out, or train on a dataset imported with "
                             "--option covariates=...")
        return
    given = read_covariate_csv(csv_path, kinds) if csv_path is not None else {}
    if given and cases and not any(c["case"] in given for c in cases):
        raise InputError(f"names none of the {len(cases)} input case(s) (first input {cases[0]['case']!r}, first in "
                         f"the file {next(iter(given))!r})", path=csv_path,
                         fix="name each case as predict does: the file name without its extension")
    for c in cases:
        c["covariates"] = given.get(c["case"], c.get("covariates") or {})
    bare = [c["case"] for c in cases if all(c["covariates"].get(n) is None for n in kinds)]
    if bare:
        logging.getLogger("medsight.predict").warning(
            f"{len(bare)} of {len(cases)} case(s) have no value of the covariates {', '.join(kinds)} the model was "
            f"trained with (first: {bare[0]}): they count as missing, as in training (values can be given with "
            "--covariates FILE.csv)")


def _predict_into(out_dir: Path, cases: list[dict], continue_: bool, done: dict, p: dict, task, models, decisions,
                  dev, save_probabilities: bool, quiet: bool, settings: dict, plans_own: dict) -> None:
    """Predict the cases not yet in ``done`` (filled as they finish) and write the summary; ``settings``
    (test-time augmentation, overlap, folds) go into each case's state line for ``--continue`` to check
    (``plans_own``: the settings of a line written before lines held them)."""
    from medsight.progress import progress as progress_bar

    state_path = out_dir / PREDICT_STATE
    for folder in (out_dir, *(d for d in out_dir.iterdir() if d.is_dir())):
        remove_stale_temporaries(folder)  # of a predict killed while writing a case
    if continue_:
        records = _predicted_records(out_dir)
        _check_same_settings(records, settings, plans_own, out_dir)
        _check_same_covariates(records, [e for e in cases if e["case"] in records], out_dir)
        done.update({case: rec["rows"] for case, rec in records.items()})
    else:
        state_path.unlink(missing_ok=True)
    n_channels = int(p["network"].get("in_channels", len(p.get("channels", [])) or 3))
    todo = [e for e in cases if e["case"] not in done]
    chunk = max(1, int(task.predict_chunk))
    bar = progress_bar(total=len(todo), desc="predict", requested=not quiet, unit="case")
    for start in range(0, len(todo), chunk):
        entries = todo[start:start + chunk]
        prepared = [_prepare_case(e, p, n_channels) for e in entries]
        preds = task.predict_cases(models, [a for a, _, _ in prepared], p, dev)
        for entry, (_, props, image), pred in zip(entries, prepared, preds):
            rows = task.write_case({"case": entry["case"], "prediction": pred, "props": props, "image": image,
                                    "source": entry["files"][0], "extension": entry["extension"],
                                    "covariates": entry.get("covariates"),
                                    "save_probabilities": save_probabilities}, out_dir, p, decisions)
            done[entry["case"]] = rows
            record = {"case": entry["case"], "rows": rows, "inference": settings}
            if entry.get("covariates") is not None:  # what the case was fused with, checked by --continue
                record["covariates"] = entry["covariates"]
            append_line(state_path, json.dumps(record))
            bar.update()
    bar.close()
    all_rows = [r for c in cases for r in done.get(c["case"], [])]
    task.write_summary(all_rows, out_dir, p, decisions)


def _check_same_settings(records: dict[str, dict], settings: dict, plans_own: dict, out_dir: Path) -> None:
    """``--continue`` refuses to finish a folder whose cases were predicted with other inference settings
    (test-time augmentation, window overlap) than the ones given now: its cases would not be comparable.
    A record without settings predates them: it counts as the plan's. The folds are recorded, not checked:
    ``run --fold every`` fills one folder with each fold's own held-out cases."""
    for case, record in records.items():
        before = record.get("inference", plans_own)
        changed = ", ".join(f"{k} {before.get(k)!r} -> {settings[k]!r}" for k in ("test_time_augmentation", "overlap")
                            if before.get(k) != settings[k])
        if changed:
            raise InputError(f"case {case!r} was predicted here with other inference settings ({changed})",
                             path=out_dir, fix="continue with the settings it was started with, or predict into "
                             "a new folder")


def _check_same_covariates(records: dict[str, dict], written: list[dict], out_dir: Path) -> None:
    """``--continue`` keeps the cases already written (``records``, :func:`_predicted_records`): refuse when
    one of them was fused with covariate values other than the ones given now (its row would disagree with
    the rest)."""
    for entry in written:
        before, now = records[entry["case"]].get("covariates"), entry.get("covariates")
        if before is not None and now is not None and before != now:
            changed = ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                                if before.get(k) != now.get(k))
            raise InputError(f"case {entry['case']!r} was predicted here with other covariate values ({changed})",
                             path=out_dir, fix="predict into a new folder, or again without --continue")


def _predicted_records(out_dir: Path) -> dict[str, dict]:
    """Case id -> its line of ``predict``'s state (summary rows, covariates used), for every case ``predict``
    finished in ``out_dir`` (a cut last line skipped)."""
    state_path = out_dir / PREDICT_STATE
    done: dict[str, dict] = {}
    if state_path.is_file():
        for line in state_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[rec["case"]] = rec
    return done


def _predicted_rows(out_dir: Path) -> dict[str, list[dict]]:
    """Case id -> its summary rows, for every case ``predict`` finished in ``out_dir``."""
    return {case: rec["rows"] for case, rec in _predicted_records(out_dir).items()}


def _prepare_case(entry: dict, p: dict, n_channels: int):
    """Read one input case, refuse it when it does not fit the model, and preprocess it as in training."""
    from medsight.datasets.check import degenerate_image
    from medsight.datasets.loading import read_case_image
    from medsight.datasets.manifest import Case
    from medsight.preprocessing.pipeline import preprocess_image

    image = read_case_image(Case(id=entry["case"], images=entry["files"]))
    if image.ndim != p["dims"]:
        raise InputError(f"image is {image.ndim}D but the model was trained on {p['dims']}D images",
                         path=entry["files"][0])
    if image.num_channels != n_channels:
        raise InputError(f"image has {image.num_channels} channel(s) but the model expects {n_channels} "
                         f"({', '.join(p.get('channels', []))})", path=entry["files"][0])
    flat = degenerate_image(image.array)
    if flat:  # predicted like any other input, but the user should know the model saw no picture
        logging.getLogger("medsight.predict").warning(f"{entry['files'][0]}: {flat}: its prediction means little")
    array, _, props = preprocess_image(image, p)
    return array, props, image


# -- evaluate -----------------------------------------------------------------------------------
def evaluate(out_dir: str | Path, reference: str | Path, output: str | Path | None = None,
             case_ids: Sequence[str] | None = None, quiet: bool = False) -> dict:
    """Score the predictions in OUT_DIR against REFERENCE; write ``metrics.json``.

    REFERENCE is a dataset folder (any task), or for segmentation a folder of reference masks named like
    the predictions (``<case><extension>``, label values as in the predictions).
    """
    from medsight.datasets.manifest import MANIFEST_NAME

    if not Path(out_dir).is_dir():
        raise InputError("no such predictions folder", path=out_dir)
    if output is not None and Path(output).is_dir():
        raise InputError("is a folder, not a file", path=output, fix="give the metrics file to write, e.g. -o metrics.json")
    case_ids = as_list(case_ids, "case_ids")
    if not (Path(reference) / MANIFEST_NAME).is_file() and Path(reference).is_dir():
        manifest = _mask_folder_manifest(Path(reference), Path(out_dir))
    else:
        manifest = Manifest.load(reference)
    task = get_task(manifest.task)
    metrics = task.evaluate(Path(out_dir), manifest, case_ids)
    # where the report finds the predictions and the reference images for its per-case figures
    metrics["sources"] = {"predictions": str(Path(out_dir).resolve()), "reference": str(Path(reference).resolve())}
    path = Path(output) if output else Path(out_dir) / "metrics.json"
    atomic_write_text(path, json.dumps(_jsonable(metrics), indent=1))
    _log(f"metrics of {metrics['num_cases']} case(s) written to {path}", quiet)
    return metrics


def _mask_folder_manifest(reference: Path, out_dir: Path) -> Manifest:
    """A segmentation manifest whose cases are the reference masks that have a prediction of the same name."""
    from medsight.datasets.manifest import Case
    from medsight.io import read_image

    predicted = {split_extension(p.name)[0] for p in out_dir.iterdir() if p.is_file() and split_extension(p.name)[1]}
    cases, values = [], set()
    for f in sorted(reference.iterdir()):
        name, ext = split_extension(f.name)
        if ext and name in predicted:
            cases.append(Case(id=name, images=[str(f)], label=str(f)))
            values |= {int(v) for v in np.unique(read_image(f).array)}
    if not cases:
        raise InputError("no reference mask here has the name of a prediction", path=reference,
                         fix="name masks <case><extension> like the predictions, or give the dataset folder")
    values |= {0}
    img = read_image(cases[0].images[0])
    return Manifest(name=reference.name, task="segmentation", dims=img.ndim, channels=["mask"],
                    labels={str(v): f"label_{v}" if v else "background" for v in sorted(values)}, cases=cases)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# -- report, export -----------------------------------------------------------------------------
def report(run_dir: str | Path, quiet: bool = False) -> Path:
    """Write ``RUN_DIR/report.html``: plan summary, learning curves, metric tables, task plots."""
    from medsight.reporting.report import write_report

    path = write_report(Path(run_dir))
    _log(f"report written to {path}", quiet)
    return path


def export(run_dir: str | Path, output: str | Path | None = None, fold: int | str | None = None, quiet: bool = False) -> Path:
    """Export a fold's network to ONNX (``RUN_DIR/model.onnx`` by default) with the plan beside it."""
    from medsight.export import export_onnx

    path = export_onnx(Path(run_dir), Path(output) if output else None, fold)
    _log(f"ONNX model written to {path}", quiet)
    return path


# -- run, demo ----------------------------------------------------------------------------------
def _subset_dataset(manifest: Manifest, cases: list, folder: Path) -> Path:
    """A dataset folder holding only ``cases`` of ``manifest`` (no splits): what ``evaluate`` scores against."""
    m = Manifest(**{**{k: getattr(manifest, k) for k in manifest.__dataclass_fields__}, "cases": list(cases),
                    "splits": []})
    folder.mkdir(parents=True, exist_ok=True)
    m.save(folder)
    return folder


def _cross_validation_predictions(run_dir: Path, manifest: Manifest, subsets: Path, pred_dir: Path,
                                  device: str | None, quiet: bool) -> Path:
    """Each fold's model predicts its own validation cases into ``pred_dir`` (out-of-fold predictions, as
    nnU-Net's cross-validation scores them); returns a dataset folder of every case validated by some fold.

    The per-case outputs of all folds share ``pred_dir``; its summary (``predictions.csv``, ``volumes.csv``,
    ``detections.csv``) is written once over all of them.
    """
    held_out = []
    for k in range(len(manifest.splits)):
        cases = manifest.fold_cases(k)[1]
        if not cases:
            continue
        held_out += cases
        predict(run_dir, [_subset_dataset(manifest, cases, subsets / f"fold_{k}")], pred_dir, continue_=k > 0,
                folds=[k], device=device, quiet=quiet)
    if not held_out:
        raise InputError("no fold of this dataset has validation cases to cross-validate on",
                         path=manifest.source or None, fix="import it again with --folds 5")
    rows = [r for case_rows in _predicted_rows(pred_dir).values() for r in case_rows]
    p = load_plan(run_dir)
    get_task(p["task"]).write_summary(rows, pred_dir, p, {})
    _log(f"cross-validation: {len(held_out)} case(s) each predicted by the fold that did not train on it", quiet)
    return _subset_dataset(manifest, held_out, subsets / "all")


def run(source: str | Path, out_dir: str | Path, format: str = "auto", task: str | None = None,
        fold: int | str = 0, budget_minutes: float | None = None, epochs: int | None = None,
        device: str | None = None, resume: bool = False, quiet: bool = False, **options) -> dict:
    """Import, plan, preprocess, train, predict the validation cases, evaluate and report, into OUT_DIR.

    ``fold="every"`` cross-validates: every fold is trained, each validation case is predicted by the fold
    that held it out, and ``OUT_DIR/run/metrics.json`` scores them all together. ``resume`` continues an
    interrupted run in OUT_DIR: finished folds are kept, the cut one continues, the others start.
    """
    fold = training_fold(fold)
    positive(epochs, "epochs", integer=True, minimum=1)
    positive(budget_minutes, "budget_minutes")
    resolve_device(device)  # an unknown or absent device is refused before the import
    out_dir = output_folder(out_dir, not_holding={"manifest.json": "a dataset", "run.json": "a run"})
    with one_writer(out_dir, "this run's folder", fix="wait for it to finish, or run into another folder"):
        return _run_into(out_dir, source, format, task, fold, budget_minutes, epochs, device, resume, quiet, options)


def _run_into(out_dir: Path, source, format: str, task: str | None, fold: int | str, budget_minutes: float | None,
              epochs: int | None, device: str | None, resume: bool, quiet: bool, options: dict) -> dict:
    """:func:`run` once its arguments are checked and OUT_DIR is this process's to write."""
    dataset_dir = out_dir / "dataset"
    manifest = import_dataset(source, dataset_dir, format=format, task=task, **options)
    if fold != "every":
        manifest.fold_cases(fold)  # an unknown fold is refused before planning
    ensure_plan(dataset_dir, budget_minutes, device, quiet=quiet)
    run_dir = train(dataset_dir, fold=fold, out=out_dir / "run", epochs=epochs, device=device, resume=resume,
                    quiet=quiet)
    pred_dir = run_dir / "validation_predictions"
    if pred_dir.exists():
        shutil.rmtree(pred_dir)
    subset = None
    if fold == "every":
        subset = _cross_validation_predictions(run_dir, manifest, out_dir / "validation_dataset", pred_dir,
                                               device, quiet)
    elif fold != "all" and (val_cases := manifest.fold_cases(fold)[1]):
        subset = _subset_dataset(manifest, val_cases, out_dir / "validation_dataset")
        predict(run_dir, [subset], pred_dir, device=device, quiet=quiet)
    metrics = evaluate(pred_dir, subset, output=run_dir / "metrics.json", quiet=quiet) if subset else {}
    report_path = report(run_dir, quiet=quiet)
    return {"run_dir": str(run_dir), "metrics": metrics, "report": str(report_path)}
