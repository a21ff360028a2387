"""``medsight compare DATASET_DIR``: four transfer-learning strategies head to head on the same folds.

(a) ``frozen``: ImageNet EfficientNet-Lite0 as a frozen feature extractor (images at its own 224 px) + a
    scikit-learn classifier (logistic regression, RBF SVM or gradient boosting, chosen by inner cross-validation);
(b) ``finetune``: the ImageNet network fine-tuned, the classifier first and the backbone opened from the
    top down (gradual unfreezing) at a tenth of the classifier's learning rate;
(c) ``scratch``: the same network and recipe from random weights, one learning rate for all;
(d) ``selfsup``: fine-tuning as (b) from an encoder adapted by self-supervised SimCLR pretraining
    (``medsight pretrain``): either an encoder file given with ``encoder=``, or one pretrained in each
    fold on that fold's training images only (no labels, and never the held-out images).

Every strategy predicts every case once, out of fold, so the table compares pooled out-of-fold AUCs
(bootstrap 95% intervals) with paired tests (DeLong), gives each strategy's wall time and recommends
the cheapest strategy not significantly worse than the best. A derived row, ``ensemble``, averages the
probabilities of the strategies that start from pretrained weights (frozen, finetune, selfsup: fixed in
advance, not picked by their scores); it trains nothing and costs the sum of their times. The budget (minutes for the whole
comparison) picks the image side and the epochs from timed training steps on this machine.
Outputs in OUT_DIR (default ``DATASET_DIR/compare``): ``compare.csv``, ``compare.json``,
``oof_predictions.csv`` and ``compare.html`` (the table, the paired tests and the ROC curves).
Finished (strategy, fold) results are kept in ``OUT_DIR/parts/<settings>/`` and reused when the command is
re-run with the same settings (side, epochs, labels, encoder, seed). The plan is kept in
``OUT_DIR/compare_plan.json`` and reused by a re-run with the same request (budget, strategies, folds, labels),
so an interrupted comparison resumes instead of re-timing this machine into other epochs.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medsight.datasets.manifest import Manifest, atomic_write_text
from medsight.errors import InputError, as_list, output_folder, positive
from medsight.locks import one_writer
from medsight.progress import log as _log

STRATEGIES = ("frozen", "finetune", "scratch", "selfsup")
#: a derived row: the mean out-of-fold probability of the strategies that start from pretrained weights
ENSEMBLE = "ensemble"
ENSEMBLED = ("frozen", "finetune", "selfsup")
SIDES = (224, 192, 160, 128, 96)
#: side of the images the frozen extractor sees, whatever side the budget gives the trained strategies: the
#: resolution EfficientNet-Lite0 was trained at, and extraction trains nothing (5-fold AUC on ISIC without colour
#: constancy: 0.679 with the budget's 192 px in the committed comparison, 0.705 at 224 px)
FROZEN_SIDE = 224
#: the frozen features hold each channel's standard deviation beside its mean, from four stages
#: (:func:`medsight.classification.frozen.extract_features`; ISIC 5-fold AUC 0.722 -> 0.749)
FROZEN_TEXTURE = True
#: colour constancy of the images unless told otherwise (5-fold frozen-feature AUC on ISIC, side 224:
#: 0.705 without, 0.727 with Shades of Gray; a no-op on grey images)
DEFAULT_COLOR_CONSTANCY = "shades_of_gray"
#: fine-tuning epochs below which a smaller image side is taken instead (an ImageNet network fine-tunes in a
#: few epochs; detail lost to a smaller side does not come back)
MIN_EPOCHS = 8
#: share of a training strategy's time that self-supervised pretraining adds to (d)
PRETRAIN_SHARE = 0.5
#: a trained strategy's time over its timed steps (augmentation, test-time views, evaluation). Measured on
#: EfficientNet-Lite0 at 224 px, 352 images, 2 threads: training took 0.97x (fine-tuning: the backbone opens
#: gradually) and 1.08x (scratch) of the steady timed step; session 14's 1.25 over a first-call timing 1.5x
#: too slow used 31 of 60 minutes (NOTES.md, session 16)
TRAINING_OVERHEAD = 1.15
#: untimed steps before timing, and timed steps (the fastest counts): the first steps of a process run up to
#: 1.5x slower while its heap and kernels warm, and this VM's speed drifts between seconds
TIMING_WARMUP, TIMING_REPEATS = 2, 4
#: the plan of a comparison, with the request it was made for, in its output folder
PLAN_FILE = "compare_plan.json"


def measure_seconds_per_image(side: int, batch: int = 32) -> float:
    """Seconds of one fully trainable EfficientNet-Lite0 training step per image of ``side`` pixels."""
    from medsight.classification.sizing import time_training_step
    from medsight.nets.efficientnet import efficientnet_lite0

    torch.manual_seed(0)
    model = efficientnet_lite0(num_classes=2, pretrained=False)
    x = torch.randn(batch, 3, side, side)
    return time_training_step(model, x, torch.zeros(batch, dtype=torch.long), repeats=TIMING_REPEATS,
                              channels_last=True, warmup=TIMING_WARMUP) / batch


def plan_comparison(n_train: int, n_folds: int, budget_minutes: float, strategies: Sequence[str],
                    seconds_per_image=measure_seconds_per_image, pretrain_needed: bool = True,
                    side: int | None = None, epochs: int | None = None) -> dict:
    """Image side and epochs so that the whole comparison fits ``budget_minutes`` on this machine.

    The trained strategies share 90% of the budget (the frozen one and the statistics need little);
    (d) counts ``1 + PRETRAIN_SHARE`` when it pretrains. The largest side of ``SIDES`` whose fine-tuning
    epochs reach ``MIN_EPOCHS`` is taken (the smallest when none does). A given ``side`` is timed alone;
    given ``side`` and ``epochs`` nothing is timed.
    """
    trained = [s for s in strategies if s != "frozen"]
    weight = sum(1 + PRETRAIN_SHARE if s == "selfsup" and pretrain_needed else 1 for s in trained)
    per_strategy = 0.9 * budget_minutes * 60 / max(weight, 1e-9)
    timing: dict[int, float] = {}
    chosen_side, chosen_epochs = side, epochs
    if epochs is None:
        for candidate in (side,) if side else SIDES:
            per_image = seconds_per_image(candidate)
            timing[candidate] = round(per_image, 5)
            fit = per_strategy / (n_folds * max(n_train, 1) * per_image * TRAINING_OVERHEAD)
            chosen_side, chosen_epochs = candidate, max(1, int(fit))
            if fit >= MIN_EPOCHS:
                break
    elif side is None:
        chosen_side = SIDES[-2]
    pretrain_seconds = PRETRAIN_SHARE * per_strategy / n_folds if "selfsup" in strategies and pretrain_needed else 0
    return {"side": int(chosen_side), "epochs": int(chosen_epochs), "timed_seconds_per_image": timing,
            "seconds_per_strategy": round(per_strategy, 1), "pretrain_minutes_per_fold": round(pretrain_seconds / 60, 3),
            "budget_minutes": budget_minutes, "strategies": list(strategies)}


def stored_plan(out_dir: Path, request: dict) -> dict | None:
    """The plan an earlier run wrote in ``out_dir`` for the same request, or None.

    Planning times training steps, and this VM's speed drifts between runs: a re-timed plan can pick other
    epochs, whose parts are then kept apart from the finished ones. Reusing the stored plan makes an
    interrupted comparison resume where it stopped, as ``plan.json`` does for ``medsight train``.
    """
    path = Path(out_dir) / PLAN_FILE
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable comparison plan ({exc})", path=path, fix="delete it to plan again") from None
    if not isinstance(stored, dict) or stored.get("request") != request or not isinstance(stored.get("plan"), dict):
        return None
    return stored["plan"]


def _subsample(train_idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified share of the training cases (at least 2 per class)."""
    if fraction >= 1.0:
        return train_idx
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels[train_idx]):
        members = train_idx[labels[train_idx] == c]
        keep += list(rng.choice(members, max(2, int(round(fraction * len(members)))), replace=False))
    return np.sort(np.array(keep))


def _run_strategy(strategy: str, images, train_idx: np.ndarray, val_idx: np.ndarray, plan: dict, fold: int,
                  encoder: str | None, features: np.ndarray | None, seed: int, work: Path) -> dict:
    """Train one strategy on one fold; its held-out probabilities and what it chose."""
    from medsight.classification.finetune import FinetuneConfig, predict_probabilities, train_classifier

    n_classes = len(images.class_names)
    x, y = images.images, images.labels
    start = time.perf_counter()
    info: dict = {}
    if strategy == "frozen":
        from medsight.classification.frozen import select_classifier

        name, clf, scores = select_classifier(features[train_idx], y[train_idx], seed=seed)
        probs = clf.predict_proba(features[val_idx])
        info = {"classifier": name, "inner_cv_auc": scores}
    else:
        init = {"finetune": "imagenet", "scratch": "random"}.get(strategy)
        if strategy == "selfsup":
            init = encoder or str(_pretrain_fold(x[plan["pretrain_idx"][fold]], plan, fold, seed, work))
        config = FinetuneConfig(epochs=plan["epochs"], init=init, seed=seed + fold,
                                backbone_lr_factor=1.0 if strategy == "scratch" else 0.1,
                                unfreeze_fraction=0.0 if strategy == "scratch" else 0.3)
        model, log = train_classifier(x[train_idx], y[train_idx], n_classes, config)
        probs = predict_probabilities(model, x[val_idx])
        info = {"epochs": plan["epochs"], "init": init, "final_loss": float(np.mean(log["loss"][-5:]))}
    return {"strategy": strategy, "fold": fold, "probs": probs.tolist(), "val_index": val_idx.tolist(),
            "n_train_labelled": int(len(train_idx)), "seconds": time.perf_counter() - start, **info}


def _pretrain_fold(images: np.ndarray, plan: dict, fold: int, seed: int, work: Path) -> Path:
    """SimCLR on one fold's training images (no labels) within the plan's pretraining time."""
    from medsight.pretrain import save_encoder, simclr_pretrain

    path = work / f"encoder_fold{fold}.safetensors"
    if path.is_file():
        return path
    backbone, log = simclr_pretrain(images, budget_minutes=plan["pretrain_minutes_per_fold"], seed=seed + fold)
    return save_encoder(backbone, path, {"fold": fold, "num_images": len(images), "epochs": log["epochs"],
                                         "seconds": log["seconds"], "side": plan["side"]})


def compare(dataset_dir: str | Path, out_dir: str | Path | None = None, budget_minutes: float = 60.0,
            strategies: Sequence[str] = STRATEGIES, folds: Sequence[int] | None = None, label_fraction: float = 1.0,
            encoder: str | Path | None = None, side: int | None = None, epochs: int | None = None, seed: int = 0,
            threads: int | None = None, color_constancy: str | None = DEFAULT_COLOR_CONSTANCY,
            covariates: bool = True, quiet: bool = False) -> dict:
    """Run the transfer-learning strategies on the dataset's folds; write the table, tests and report.

    ``color_constancy`` (default Shades of Gray; None to keep the colours) is applied to every image
    before any strategy sees it (see :mod:`medsight.classification.images`). A dataset imported with
    clinical covariates has them fused into every strategy's probabilities (a covariate model fitted on
    each training fold; :mod:`medsight.classification.covariates`) unless ``covariates`` is False; the
    report keeps each strategy's AUC from the images alone and the covariates' alone beside it.

    Example:
        >>> compare("work/isic", budget_minutes=60)  # doctest: +SKIP
    """
    from medsight.device import set_threads

    set_threads(threads)
    strategies, folds = as_list(strategies, "strategies"), as_list(folds, "folds")
    if not strategies:
        raise InputError("no strategies to compare", fix=f"use some of {', '.join(STRATEGIES)}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise InputError(f"unknown strategies {unknown}", fix=f"use some of {', '.join(STRATEGIES)}")
    if folds is not None and (not folds or not all(isinstance(k, int) and not isinstance(k, bool) for k in folds)):
        raise InputError(f"folds must be fold numbers (0, 1, ...), got {folds!r}")
    positive(budget_minutes, "budget_minutes")
    positive(side, "side", integer=True, minimum=8)
    positive(epochs, "epochs", integer=True, minimum=1)
    if not 0 < label_fraction <= 1:
        raise InputError(f"label fraction must be in (0, 1], got {label_fraction}")
    manifest = Manifest.load(dataset_dir)
    if not manifest.splits:
        raise InputError("the dataset has no folds to compare on", path=dataset_dir,
                         fix="import it again with --folds 5")
    if manifest.task != "classification" or manifest.dims != 2:
        raise InputError(f"needs a 2D classification dataset, this one is {manifest.dims}D {manifest.task}",
                         path=dataset_dir)
    if encoder is not None:
        from medsight.pretrain import load_encoder

        load_encoder(encoder)  # a missing or foreign file is refused before anything is written
    fold_ids = list(range(len(manifest.splits))) if folds is None else folds
    _check_folds(manifest, fold_ids, dataset_dir)
    out = output_folder(out_dir if out_dir else Path(dataset_dir) / "compare")
    created = not out.exists()
    try:
        with one_writer(out, "this comparison", fix="wait for it to finish, or compare into another folder with -o"):
            return _compare(manifest, dataset_dir, out, budget_minutes, strategies, fold_ids, label_fraction,
                            encoder, side, epochs, seed, color_constancy, covariates, quiet)
    except BaseException:
        if created and out.is_dir() and not any(out.glob("parts/*/*")):  # no finished fold or encoder
            shutil.rmtree(out, ignore_errors=True)  # nothing finished: leave nothing behind
        raise


def _check_folds(manifest: Manifest, fold_ids: list[int], dataset_dir) -> None:
    """Refuse unknown folds, and folds whose training cases hold a single class (nothing to learn)."""
    bad = [k for k in fold_ids if not 0 <= k < len(manifest.splits)]
    if bad:
        raise InputError(f"folds {bad} do not exist: the dataset has {len(manifest.splits)} folds", path=dataset_dir,
                         fix=f"use --folds among 0..{len(manifest.splits) - 1}")
    label_of = {c.id: c.label for c in manifest.cases}
    for k in fold_ids:
        classes = sorted({manifest.labels.get(str(label_of[i]), str(label_of[i])) for i in manifest.splits[k]["train"]})
        if len(classes) < 2:
            raise InputError(f"fold {k}'s training cases are all of one class ({classes[0] if classes else 'none'}): "
                             "a classifier needs two", path=dataset_dir,
                             fix="import it again with fewer --folds, or with more cases of the rarer class")


def _compare(manifest: Manifest, dataset_dir, out: Path, budget_minutes: float, strategies: Sequence[str],
             fold_ids: list[int], label_fraction: float, encoder, side: int | None, epochs: int | None, seed: int,
             color_constancy: str | None, covariates: bool, quiet: bool) -> dict:
    """The comparison itself, once its inputs are checked (see :func:`compare`)."""
    from medsight.classification.comparison_stats import paired_tests, recommend, strategy_summary
    from medsight.classification.images import load_image_set

    n_train = int(np.mean([len(manifest.splits[k]["train"]) for k in fold_ids]))
    request = {"budget_minutes": budget_minutes, "strategies": list(strategies), "folds": fold_ids,
               "n_train_labelled": max(1, int(n_train * label_fraction)), "pretrain_needed": encoder is None,
               "side": side, "epochs": epochs}
    plan = stored_plan(out, request)
    if plan is None:
        plan = plan_comparison(request["n_train_labelled"], len(fold_ids), budget_minutes, strategies,
                               seconds_per_image=measure_seconds_per_image, pretrain_needed=encoder is None,
                               side=side, epochs=epochs)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / PLAN_FILE, json.dumps({"request": request, "plan": plan}, indent=1))
    else:
        _log(f"compare: the plan in {out / PLAN_FILE} was made for this request: reused, so finished parts are too "
             f"(delete it to time this machine again)", quiet)
    parts = out / "parts" / _settings_key(plan, label_fraction, encoder, seed, color_constancy)
    parts.mkdir(parents=True, exist_ok=True)
    _log(f"compare: {len(manifest.cases)} cases, folds {fold_ids}, side {plan['side']} px, {plan['epochs']} epochs "
         f"per trained strategy, budget {budget_minutes} min", quiet)
    images = load_image_set(manifest, plan["side"], color_constancy=color_constancy)
    y = images.labels
    splits = {k: (images.index_of(manifest.splits[k]["train"]), images.index_of(manifest.splits[k]["val"]))
              for k in fold_ids}
    plan["pretrain_idx"] = {k: splits[k][0] for k in fold_ids}
    plan["color_constancy"] = color_constancy
    features = None
    feature_seconds = 0.0
    if "frozen" in strategies:
        from medsight.classification.finetune import build_model
        from medsight.classification.frozen import extract_features

        t0 = time.perf_counter()
        frozen_images = images if plan["side"] == FROZEN_SIDE else load_image_set(
            manifest, FROZEN_SIDE, color_constancy=color_constancy)
        if frozen_images.ids != images.ids:
            raise RuntimeError("the frozen extractor's images are not in the order of the trained strategies'")
        features = extract_features(build_model("imagenet", len(images.class_names)), frozen_images.images,
                                    texture=FROZEN_TEXTURE)
        del frozen_images
        feature_seconds = time.perf_counter() - t0
        plan["frozen_side"], plan["frozen_texture"] = FROZEN_SIDE, FROZEN_TEXTURE
    results: dict[str, list[dict]] = {s: [] for s in strategies}
    labelled_of = {}
    for k in fold_ids:
        train_idx, val_idx = splits[k]
        labelled = labelled_of[k] = _subsample(train_idx, y, label_fraction, seed + k)
        for strategy in strategies:
            part = parts / (f"frozen_side{FROZEN_SIDE}{'_texture' if FROZEN_TEXTURE else ''}_fold{k}.json"
                            if strategy == "frozen" else f"{strategy}_fold{k}.json")
            if part.is_file():
                res = json.loads(part.read_text())
            else:
                res = _run_strategy(strategy, images, labelled, val_idx, plan, k,
                                    str(encoder) if encoder else None, features, seed, parts)
                atomic_write_text(part, json.dumps(res))
            results[strategy].append(res)
            _log(f"fold {k} {strategy}: AUC {_fold_auc(y, res):.3f} ({res['seconds']:.0f} s)", quiet)
    oof = {s: _pooled(results[s], len(y), len(images.class_names)) for s in strategies}
    covered = np.concatenate([splits[k][1] for k in fold_ids])
    fold_of_case = np.full(len(y), -1)
    for k in fold_ids:
        fold_of_case[splits[k][1]] = k
    seconds = {s: sum(r["seconds"] for r in results[s]) + (feature_seconds if s == "frozen" else 0) for s in strategies}
    pretrained = [s for s in strategies if s in ENSEMBLED]
    if len(pretrained) >= 2:  # derived, no training: the mean probability of the pretrained strategies
        oof[ENSEMBLE] = np.mean([oof[s] for s in pretrained], axis=0)
        seconds[ENSEMBLE] = sum(seconds[s] for s in pretrained)
    kinds = manifest.extra.get("covariates") if covariates else None
    covariate_report, images_only = None, None
    if kinds:
        by_id = manifest.case_by_id
        rows = [by_id[i].covariates for i in images.ids]
        covariate_probs, oof_fused = _fused_with_covariates(oof, rows, y, kinds, len(images.class_names), splits,
                                                            labelled_of)
        alone = strategy_summary(y[covered], covariate_probs[covered], fold_of_case[covered], seed=seed)
        covariate_report = {"kinds": kinds, "auc_alone": alone["auc"], "auc_alone_ci95": alone["auc_ci95"],
                            "fusion": "independent evidence: image x covariate probabilities / prior"}
        images_only, oof = oof, oof_fused
        _log(f"compare: covariates {', '.join(kinds)} fused into every strategy (alone: AUC {alone['auc']:.3f})",
             quiet)
    names = list(oof)
    summaries = {s: {**strategy_summary(y[covered], oof[s][covered], fold_of_case[covered], seed=seed),
                     "seconds": round(seconds[s], 1)} for s in names}
    if images_only is not None:  # each strategy against itself without the covariates, paired case by case
        for s in names:
            test = paired_tests(y[covered], {"fused": oof[s][covered], "images": images_only[s][covered]}, seed=seed)[0]
            summaries[s]["auc_images_only"] = test["auc_b"]
            summaries[s]["p_value_covariates"] = test["p_value"]
    if ENSEMBLE in summaries:
        summaries[ENSEMBLE]["members"] = pretrained
    tests = paired_tests(y[covered], {s: oof[s][covered] for s in names}, seed=seed) if len(names) > 1 else []
    advice = recommend(summaries, tests, seconds)
    for s in strategies:
        extra = [r.get("classifier") for r in results[s] if r.get("classifier")]
        if extra:
            summaries[s]["classifiers_chosen"] = extra
    report = {"dataset": str(Path(dataset_dir).resolve()), "num_cases": int(len(covered)),
              "class_names": images.class_names, "folds": fold_ids, "label_fraction": label_fraction,
              "plan": {k: v for k, v in plan.items() if k != "pretrain_idx"}, "encoder": str(encoder) if encoder else None,
              "strategies": summaries, "paired_tests": tests, "recommendation": advice,
              "cases_without_a_picture": len(manifest.extra.get("cases_without_a_picture", [])),
              "covariates": covariate_report}
    from medsight.classification.comparison_report import write_outputs

    write_outputs(out, report, images.ids, y, oof, covered)
    if report["cases_without_a_picture"]:
        _log(f"note: {report['cases_without_a_picture']} of {len(manifest.cases)} images hold no picture (constant or "
             f"striped; the import's warnings list them): every strategy is scored on them too", quiet)
    _log(_table_text(report), quiet)
    _log(f"recommendation: {advice['strategy']} ({advice['reason']})\ntable: {out / 'compare.csv'}; "
         f"report: {out / 'compare.html'}", quiet)
    return report


def _fused_with_covariates(oof: dict[str, np.ndarray], rows: list[dict], y: np.ndarray, kinds: dict[str, str],
                           n_classes: int, splits: dict, labelled_of: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Out-of-fold covariate probabilities (a model per fold, fitted on the fold's labelled training cases)
    and every strategy's probabilities fused with them."""
    from medsight.classification.covariates import CovariateModel, fuse

    covariate_probs = np.full((len(y), n_classes), np.nan)
    fused = {s: p.copy() for s, p in oof.items()}
    for k, (_, val_idx) in splits.items():
        train = labelled_of[k]
        model = CovariateModel(kinds, n_classes).fit([rows[i] for i in train], y[train])
        covariate_probs[val_idx] = model.predict_proba([rows[i] for i in val_idx])
        for s, p in oof.items():
            fused[s][val_idx] = fuse(p[val_idx], covariate_probs[val_idx], model.prior)
    return covariate_probs, fused


def _settings_key(plan: dict, label_fraction: float, encoder, seed: int, color_constancy: str | None = None) -> str:
    """Folder name of the settings a finished part depends on (a re-run with other settings starts afresh)."""
    from medsight.kept_work import settings_key

    settings = [plan["side"], plan["epochs"], plan["pretrain_minutes_per_fold"], label_fraction,
                str(Path(encoder).resolve()) if encoder else None, seed]
    if color_constancy is not None:  # keeps the keys of runs made before colour constancy existed
        settings.append(color_constancy)
    digest = settings_key(settings)[:8]
    return f"side{plan['side']}_epochs{plan['epochs']}_labels{label_fraction:g}_{digest}"


def _pooled(results: list[dict], n: int, k: int) -> np.ndarray:
    """Out-of-fold probabilities (n, k); rows of cases no fold held out stay NaN."""
    probs = np.full((n, k), np.nan)
    for r in results:
        probs[np.asarray(r["val_index"], dtype=int)] = np.asarray(r["probs"])
    return probs


def _fold_auc(y: np.ndarray, result: dict) -> float:
    from medsight.evaluation.classification import roc_auc

    idx = np.asarray(result["val_index"], dtype=int)
    try:
        return roc_auc(y[idx], np.asarray(result["probs"]))
    except ValueError:
        return float("nan")


def _table_text(report: dict) -> str:
    fused = report.get("covariates") is not None
    rows = [f"  {'strategy':<10} {'AUC':>6}  {'95% CI':<15} {'mean fold AUC':>13} {'seconds':>8}"
            + ("  images alone" if fused else "")]
    for s, r in report["strategies"].items():
        lo, hi = r["auc_ci95"]
        rows.append(f"  {s:<10} {r['auc']:6.3f}  [{lo:.3f}, {hi:.3f}]  {r['mean_fold_auc']:13.3f} {r['seconds']:8.0f}"
                    + (f"  {r['auc_images_only']:13.3f}" if fused else ""))
    return "\n".join(rows)
