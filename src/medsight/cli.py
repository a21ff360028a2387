"""The command line: a thin skin over :mod:`medsight.api` (one sub-command per public function)."""
from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback

from medsight.errors import MedsightError

EPILOG = """examples:
  medsight import ../shared/data/drive/training work/drive --format pairs
  medsight train work/drive --fold 0            # plans and preprocesses first when needed
  medsight predict work/drive/run new_images/ -o out/
  medsight evaluate out/ work/drive
  medsight report work/drive/run
  medsight demo                                 # the whole flow on small data shipped with medsight
"""


def _fold(value: str) -> int | str:
    if value == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a fold is a number (0, 1, ...) or 'all'") from None


def _training_fold(value: str) -> int | str:
    """A fold to train: a number, 'all' (one model on every case) or 'every' (each fold in turn)."""
    from medsight.api import training_fold

    try:
        return training_fold(value)
    except MedsightError as e:
        raise argparse.ArgumentTypeError(e.problem) from None


def _positive_int(value: str) -> int:
    """A size or count that must be at least 1 (pixels, tiles, a downsampling factor)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return number


def _options(pairs: list[str] | None) -> dict:
    """``--option key=value`` pairs for an importer."""
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise MedsightError(f"--option {item!r} is not key=value")
        k, v = item.split("=", 1)
        out[k.replace("-", "_")] = v
    return out


#: the layouts `import` (and `run`) read; "auto" finds it from the source
IMPORT_FORMATS = ["auto", "msd", "pairs", "cases", "folder-csv", "folder-json", "medmnist", "voc", "dicom"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="medsight", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Train and evaluate classification, detection and segmentation models from a folder of "
                    "medical images; each stage configures itself from the data.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=f"{help_}\n\nexample:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
        return p

    p = cmd("import", "import a dataset folder (or .npz) into DATASET_DIR; checks every file",
            "medsight import ../shared/data/medmnist/breastmnist.npz work/breast")
    p.add_argument("source")
    p.add_argument("dataset_dir")
    p.add_argument("--format", default="auto", choices=IMPORT_FORMATS)
    p.add_argument("--task", choices=["classification", "detection", "segmentation"])
    _add_importer_arguments(p)
    p.add_argument("--val-cases", nargs="+", metavar="ID",
                   help="one fixed split instead of folds: these case ids validate, the rest train "
                        "(ids, or a text file of ids)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="importer option (repeatable)")

    p = cmd("plan", "fingerprint the dataset and write DATASET_DIR/plan.json (editable)",
            "medsight plan work/drive --budget-minutes 20")
    p.add_argument("dataset_dir")
    p.add_argument("--budget-minutes", type=float)
    p.add_argument("--device")

    p = cmd("preprocess", "preprocess every case into the on-disk cache", "medsight preprocess work/drive")
    p.add_argument("dataset_dir")
    p.add_argument("--workers", type=int)

    p = cmd("train", "train fold K (or all, or every fold in turn) of a dataset",
            "medsight train work/drive --fold 0 --out runs/drive")
    p.add_argument("dataset_dir")
    p.add_argument("--fold", type=_training_fold, default=0,
                   help="K, 'all' (one model on every case, nnU-Net's meaning) or 'every' (fold 0, 1, ... in turn)")
    p.add_argument("--out")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--epochs", type=int)
    p.add_argument("--budget-minutes", type=float)
    p.add_argument("--device")
    p.add_argument("--threads", type=int)

    p = cmd("predict", "predict images, folders or a dataset with a trained run (folds ensembled)",
            "medsight predict runs/drive new_scans/ -o out/")
    p.add_argument("run_dir")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders of them, a dataset folder, or (3D runs) a DICOM series folder, or a "
                        "folder of series folders: one case each, named after its folder, mask as .nii.gz")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--continue", dest="continue_", action="store_true", help="skip cases already written")
    p.add_argument("--save-probabilities", action="store_true")
    p.add_argument("--folds", nargs="+", metavar="K",
                   help="predict with these trained folds only (a number, or 'all'; default: every trained fold, "
                        "ensembled)")
    p.add_argument("--disable-tta", action="store_true",
                   help="no test-time mirroring: one pass per window instead of up to 8 (nnU-Net's --disable_tta)")
    p.add_argument("--overlap", type=float, metavar="F",
                   help="overlap of the sliding windows, a fraction of the window in [0, 1) (the plan's: 0.5)")
    p.add_argument("--covariates", metavar="FILE.csv",
                   help="clinical covariates of the inputs, for a classifier trained with them: a CSV with a case "
                        "column and one column per covariate (a dataset folder's cases bring their own)")
    p.add_argument("--device")
    p.add_argument("--threads", type=int)

    p = cmd("evaluate", "score predictions against a reference dataset; writes metrics.json",
            "medsight evaluate out/ work/drive")
    p.add_argument("out_dir")
    p.add_argument("reference")
    p.add_argument("-o", "--output")

    p = cmd("report", "write RUN_DIR/report.html", "medsight report runs/drive")
    p.add_argument("run_dir")

    p = cmd("export", "export the network to ONNX with its plan", "medsight export runs/drive -o drive.onnx")
    p.add_argument("run_dir")
    p.add_argument("-o", "--output")
    p.add_argument("--fold", type=_fold)

    p = cmd("run", "import, plan, preprocess, train, predict validation cases, evaluate, report",
            "medsight run ../shared/data/medmnist/breastmnist.npz out/breast")
    p.add_argument("source")
    p.add_argument("out_dir")
    p.add_argument("--format", default="auto", choices=IMPORT_FORMATS)
    p.add_argument("--task", choices=["classification", "detection", "segmentation"])
    _add_importer_arguments(p)
    p.add_argument("--fold", type=_training_fold, default=0,
                   help="K, 'all' (one model on every case: nothing left to evaluate) or 'every' (cross-"
                        "validation: each fold in turn, each case predicted by the fold that did not train on it, "
                        "one metrics.json)")
    p.add_argument("--val-cases", nargs="+", metavar="ID", help="one fixed split: these case ids validate")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in OUT_DIR: finished folds kept, the cut one continued")
    p.add_argument("--budget-minutes", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--device")
    p.add_argument("--option", action="append", metavar="KEY=VALUE")

    p = cmd("compare", "transfer learning head to head on the same folds: frozen ImageNet features + a "
                       "scikit-learn classifier, fine-tuning, training from scratch, fine-tuning from "
                       "self-supervised pretraining; writes a table with AUC intervals, paired tests, times and "
                       "a recommendation",
            "medsight compare work/isic --budget-minutes 60")
    p.add_argument("dataset_dir")
    p.add_argument("-o", "--out", help="output folder (default DATASET_DIR/compare); run the same command again "
                                      "to resume: its plan and finished folds are reused")
    p.add_argument("--budget-minutes", type=float, default=60.0, help="for the whole comparison (default 60)")
    p.add_argument("--strategies", nargs="+", default=["frozen", "finetune", "scratch", "selfsup"],
                   choices=["frozen", "finetune", "scratch", "selfsup"])
    p.add_argument("--folds", type=int, nargs="+", help="fold numbers to run (default: every fold)")
    p.add_argument("--label-fraction", type=float, default=1.0, help="share of the training labels used (0-1]")
    p.add_argument("--encoder", help="encoder file from `medsight pretrain` for the selfsup strategy "
                                     "(default: pretrain in each fold on its training images)")
    p.add_argument("--side", type=int, help="image side in pixels (default: chosen from the budget)")
    p.add_argument("--epochs", type=int, help="epochs per trained strategy (default: chosen from the budget)")
    p.add_argument("--color-constancy", choices=["shades_of_gray", "none"], default="shades_of_gray",
                   help="colour normalisation of every image first (default shades_of_gray; grey images unchanged)")
    p.add_argument("--no-covariates", action="store_true",
                   help="leave out the clinical covariates the dataset was imported with (--option covariates=)")
    p.add_argument("--threads", type=int)

    p = cmd("pretrain", "self-supervised (SimCLR) pretraining of the EfficientNet-Lite0 encoder on unlabelled "
                        "images; the encoder plugs into `medsight compare --encoder`",
            "medsight pretrain ../shared/data/isic_uda1 -o work/isic_encoder.safetensors --budget-minutes 10")
    p.add_argument("images_dir")
    p.add_argument("-o", "--output", required=True, help="encoder file to write (safetensors)")
    p.add_argument("--budget-minutes", type=float, default=10.0)
    p.add_argument("--epochs", type=int, help="epochs (default: as many as the budget allows)")
    p.add_argument("--side", type=_positive_int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--init", choices=["imagenet", "random"], default="imagenet")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUTPUT.checkpoint.pt (same folder and options)")
    p.add_argument("--threads", type=int)

    p = cmd("lesions", "classify lesions at given points: patches at several scales around each point, one "
                       "stream per scale; reports per-class accuracy of the multi-scale network and a "
                       "single-scale one (CSV columns: image, x, y[, z], label[, split])",
            "medsight lesions work/bccd_points.csv -o out/bccd_lesions --scales 48 96 192")
    p.add_argument("points_csv")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--scales", type=_positive_int, nargs="+", default=[32, 64, 128], help="patch sides in pixels around the point")
    p.add_argument("--patch", type=_positive_int, default=32, help="side every patch is resized to")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--mode", choices=["3d", "2.5d"], default="3d", help="volumes: 3D patches or three orthogonal planes")
    p.add_argument("--images-root", help="folder of relative image paths (default: the CSV's folder)")
    p.add_argument("--threads", type=int)

    p = cmd("mil", "multiple-instance learning from image labels only: bag = image, label = contains objects "
                   "of a class (from a detection dataset's boxes), instances = tiles; attention says where, and "
                   "is scored against the boxes",
            "medsight mil work/bccd --positive-class Platelets -o out/bccd_mil")
    p.add_argument("dataset_dir", help="an imported 2D detection dataset (e.g. --format voc)")
    p.add_argument("--positive-class", required=True)
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--tile", type=_positive_int, default=32, help="tile side after downsampling (pixels)")
    p.add_argument("--downsample", type=_positive_int, default=2)
    p.add_argument("--encoder", choices=["imagenet", "scratch"], default="imagenet",
                   help="tile features: frozen ImageNet EfficientNet-Lite0 (RGB) or a small CNN trained from scratch")
    p.add_argument("--threads", type=int)

    p = cmd("localise", "3D boxes of a structure by slice classification: a 2D CNN labels each slice along each "
                        "axis, the longest positive run per axis bounds the box; cross-validated over the folds, "
                        "scored by box IoU (boxes.csv, localise.json)",
            "medsight localise work/brats --structure whole_tumour -o out/brats_boxes")
    p.add_argument("dataset_dir", help="an imported 3D segmentation dataset (the masks give the slice labels)")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--structure", help="a region, a label name, or label values 'a,b' (default: all foreground)")
    p.add_argument("--folds", type=int, nargs="+", help="folds to run (default: all)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--side", type=int, default=64, help="slices are resized to side x side (default 64)")
    p.add_argument("--threads", type=int)

    p = cmd("weak", "weakly supervised localisation: a classifier trained on image labels only (holds an object "
                    "of the class, from a detection dataset's boxes); its class-activation map's peaks are the "
                    "points, scored against the boxes (image AUC, FROC/CPM)",
            "medsight weak work/bccd --positive-class Platelets -o out/bccd_weak")
    p.add_argument("dataset_dir", help="an imported 2D detection dataset (e.g. --format voc)")
    p.add_argument("--positive-class", required=True)
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--downsample", type=_positive_int, default=1)
    p.add_argument("--threads", type=int)

    p = cmd("demo", "the whole flow on small real data shipped inside medsight (under 3 minutes on 2 cores)",
            "medsight demo out/demo")
    p.add_argument("out_dir", nargs="?", default="medsight-demo")
    return parser


#: commands that train in the CLI's own process (train and predict set their threads through the API)
THREADED_STUDIES = ("pretrain", "lesions", "mil", "localise", "weak")




def _add_importer_arguments(p: argparse.ArgumentParser) -> None:
    """The importer's options, shared by ``import`` and ``run`` (which imports first)."""
    p.add_argument("--images-dir")
    p.add_argument("--labels-dir")
    p.add_argument("--eval-mask-dir")
    p.add_argument("--label-map", help="raw:value pairs, e.g. 0:1,255:0 (ISBI membranes are the 0 pixels)")
    p.add_argument("--label-names", help="value:name pairs naming the label values, e.g. 1:vessel")
    p.add_argument("--regions", help="overlapping structures to score, e.g. 'whole=1,2,3,4;core=1,3,4;enhancing=4'")
    p.add_argument("--csv")
    p.add_argument("--min-box-size", type=int, metavar="VOXELS",
                   help="with --task detection on masks: components under this many voxels make no box (default 20)")
    p.add_argument("--folds", type=int, help="number of cross-validation folds (default 5, fewer for a small dataset)")


def _importer_options(args: argparse.Namespace) -> dict:
    """``--option KEY=VALUE`` pairs and the importer arguments given, as keyword arguments of the import."""
    opts = _options(args.option)
    from medsight.datasets.importers import OPTIONS_WITH_FLAGS

    opts.update({k: getattr(args, k) for k in OPTIONS_WITH_FLAGS if getattr(args, k) is not None})
    return opts


def dispatch(args: argparse.Namespace) -> None:
    """Call the API function of the parsed command."""
    from medsight import api

    if args.command in THREADED_STUDIES:  # the study commands train in this process
        from medsight.device import set_threads

        set_threads(args.threads)
    if args.command == "import":
        m = api.import_dataset(args.source, args.dataset_dir, format=args.format, task=args.task,
                               n_folds=args.folds, val_cases=args.val_cases, **_importer_options(args))
        print(f"imported {len(m.cases)} {m.task} cases ({m.dims}D, channels {', '.join(m.channels)}, "
              f"{len(m.splits)} folds) into {args.dataset_dir}")
        if m.extra.get("covariates"):
            from medsight.classification.covariates import covariate_summary

            print("clinical covariates:\n" + covariate_summary(m.extra["covariates"], [c.covariates for c in m.cases]))
    elif args.command == "plan":
        api.plan(args.dataset_dir, args.budget_minutes, args.device)
    elif args.command == "preprocess":
        print(f"cache: {api.preprocess(args.dataset_dir, args.workers)}")
    elif args.command == "train":
        api.train(args.dataset_dir, fold=args.fold, out=args.out, resume=args.resume, epochs=args.epochs,
                  budget_minutes=args.budget_minutes, device=args.device, threads=args.threads)
    elif args.command == "predict":
        api.predict(args.run_dir, args.inputs, args.out, continue_=args.continue_,
                    save_probabilities=args.save_probabilities, device=args.device, threads=args.threads,
                    folds=args.folds, covariates=args.covariates, test_time_augmentation=not args.disable_tta,
                    overlap=args.overlap)
    elif args.command == "evaluate":
        api.evaluate(args.out_dir, args.reference, args.output)
    elif args.command == "report":
        api.report(args.run_dir)
    elif args.command == "export":
        api.export(args.run_dir, args.output, args.fold)
    elif args.command == "run":
        res = api.run(args.source, args.out_dir, format=args.format, task=args.task, fold=args.fold,
                      budget_minutes=args.budget_minutes, epochs=args.epochs, device=args.device,
                      resume=args.resume, val_cases=args.val_cases, n_folds=args.folds, **_importer_options(args))
        print(f"report: {res['report']}")
    elif args.command == "compare":
        from medsight.compare import compare

        compare(args.dataset_dir, args.out, budget_minutes=args.budget_minutes, strategies=args.strategies,
                folds=args.folds, label_fraction=args.label_fraction, encoder=args.encoder, side=args.side,
                epochs=args.epochs, threads=args.threads,
                color_constancy=None if args.color_constancy == "none" else args.color_constancy,
                covariates=not args.no_covariates)
    elif args.command == "pretrain":
        from medsight.pretrain import pretrain

        pretrain(args.images_dir, args.output, epochs=args.epochs, budget_minutes=args.budget_minutes,
                 side=args.side, init=args.init, resume=args.resume)
    elif args.command == "lesions":
        from medsight.classification.lesions import classify_lesions

        classify_lesions(args.points_csv, args.out, scales=args.scales, patch=args.patch, epochs=args.epochs,
                         mode=args.mode, images_root=args.images_root)
    elif args.command == "mil":
        from medsight.classification.mil import run_mil

        run_mil(args.dataset_dir, args.out, args.positive_class, epochs=args.epochs, downsample=args.downsample,
                tile=args.tile, encoder=args.encoder)
    elif args.command == "localise":
        from medsight.localise import localise

        localise(args.dataset_dir, args.out, structure=args.structure, folds=args.folds, epochs=args.epochs,
                 side=args.side)
    elif args.command == "weak":
        from medsight.weak import weak_localise

        weak_localise(args.dataset_dir, args.out, args.positive_class, epochs=args.epochs, downsample=args.downsample)
    elif args.command == "demo":
        from medsight.demo import run_demo

        run_demo(args.out_dir)


#: what to do about a failure of the machine rather than of the input, by errno
_OS_FIXES = {errno.ENOSPC: "free some disk space and run the command again: what was written before is intact, "
                           "train --resume continues from the last checkpoint, predict --continue after the last case",
             errno.EDQUOT: "free some of your disk quota and run the command again (train --resume, predict --continue)",
             errno.EACCES: "this user may not write or read there: change the folder's permissions or choose another",
             errno.EPERM: "this user may not write or read there: change the folder's permissions or choose another",
             errno.EROFS: "the file system is read-only: write the outputs somewhere else"}

_MEMORY = ("not enough memory", "out of memory", "can't allocate memory")


def machine_error_line(error: BaseException, command: str | None = None) -> str | None:
    """One line for a failure of the machine (a full disk, a folder this user may not write, memory run out),
    naming the file and what to do (for ``command``); None for any other error (a bug: its traceback is shown)."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        fix = _OS_FIXES.get(error.errno)
        return " ".join(f"{where}{error.strerror}{f' ({fix})' if fix else ''}".split())
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and any(m in text.lower() for m in _MEMORY)):
        fix = ("segmentation batches its sliding windows by inference.batch_size in the run's plan.json: lower it, or "
               "predict on a machine with more memory" if command == "predict"
               else "make the plan smaller: lower batch_size or patch_size in plan.json, then train again")
        return f"out of memory{': ' + text if text else ''} ({fix})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input gives one line on stderr and exit status 2 (``--debug`` shows the traceback).

    Run as the process's own command line (no ``argv`` given), it first sets the allocator for training
    (:func:`medsight.allocator.keep_freed_memory`); called with ``argv`` from another program, it leaves that
    program's allocator alone.
    """
    own_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MEDSIGHT_DEBUG") == "1"
    parser = build_parser()
    args = parser.parse_args(argv)
    if own_process:
        from medsight.allocator import keep_freed_memory

        keep_freed_memory()
    try:
        dispatch(args)
    except MedsightError as e:
        if debug:
            traceback.print_exc()
        print(f"medsight: error: {e.one_line()}", file=sys.stderr)
        return 2
    except (OSError, MemoryError, RuntimeError) as e:
        line = machine_error_line(e, args.command)
        if line is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"medsight: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("medsight: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
