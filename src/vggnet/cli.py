"""The ``vggnet`` command: thin. It parses arguments, builds explicit values and calls the library;
every user error becomes one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import VGGError, describe


# -- info / convert ---------------------------------------------------------------------------------
def cmd_info(args) -> None:
    from .models import complexity, list_models
    from .models.configs import TABLE1, TORCHVISION_NAMES
    from .tables import columns, render

    cols = columns(
        "config",
        "weight layers",
        ("parameters", "params", "{:,}"),
        ("(M)", "millions", "{:.0f}"),
        ("GMACs@224", "gmacs", "{:.2f}"),
        "torchvision",
        "conv stages (Table 1)",
    )
    rows = []
    for arch in list_models():
        c = complexity(arch)
        rows.append(
            {
                "config": arch,
                "weight layers": c["weight_layers"],
                "params": c["params"],
                "millions": c["params"] / 1e6,
                "gmacs": c["macs"] / 1e9,
                "torchvision": TORCHVISION_NAMES.get(arch, "-"),
                "conv stages (Table 1)": " | ".join(TABLE1[arch]),
            }
        )
    print(render(rows, cols))
    print(
        "\nEvery net ends with FC-4096, FC-4096, FC-1000 and soft-max; all convs stride 1, "
        "5 max-pools 2x2/2 (§2.1)."
    )


def cmd_convert(args) -> None:
    from .models.configs import TORCHVISION_NAMES
    from .models.convert import convert

    r = convert(
        args.src,
        args.dst,
        args.to,
        **(
            {}
            if args.to == "torchvision"
            else dict(arch=args.arch, classes_path=args.classes, prototxt=args.prototxt)
        ),
        force=args.force,
    )
    if r["to"] == "torchvision":
        print(
            f"wrote torchvision state dict of config {r['arch']} ({TORCHVISION_NAMES.get(r['arch'], '?')}"
            f"{'_bn' if r['batch_norm'] else ''}) to {r['dst']}, class names to {r['classes_file']}"
            + (f"; {r['folded']}" if r["folded"] else "")
        )
    else:
        print(
            f"wrote config {r['arch']} ({r['classes']} classes, {r['source']} preprocessing: "
            f"{r['preprocessing']}) "
            f"to {r['dst']}"
        )


def cmd_predict(args) -> None:
    import json

    from .predict import predict
    from .tables import columns, render

    results = predict(
        args.checkpoint, args.images, **library_kwargs(predict, args, skip=("weights", "images"))
    )
    if args.json:
        print(json.dumps(results, indent=1))
        return
    cols = columns("rank", "class", "name", ("probability", "prob", "{:.3f}"))
    for r in results:
        print(
            render(
                r["top"], cols, title=f"{r['image']}  ({r['protocol']}, Q={','.join(map(str, r['scales']))})"
            )
        )


def cmd_export(args) -> None:
    from .models.export import export_onnx

    r = export_onnx(args.checkpoint, args.onnx, dense=args.dense, force=args.force)
    c = r["contract"]
    print(
        f"wrote {r['out']} ({r['arch']}, output '{r['output']}'); input 'images': uint8 RGB, NCHW "
        f"({', '.join(map(str, c['shape']))}): {c['steps']}; {r['preprocessing']} inside the graph; "
        f"checked with ONNX Runtime: largest relative difference {r['gap']:.1e}; input contract and class "
        f"names (id, name): {r['contract_file']} (and the model's metadata), "
        f"class ids: {r['classes_file']}"
    )


# -- data ------------------------------------------------------------------------------------------
def cmd_data_synth(args) -> None:
    from .data.synth import make_synthetic

    info = make_synthetic(args.out, **library_kwargs(make_synthetic, args, skip=("out", "progress")))
    print(
        f"wrote {info['train']} training and {info['val']} validation images of {len(info['classes'])} "
        f"classes ({info['size']}px) to {info['root']}"
    )


def cmd_data_imagenet_labels(args) -> None:
    from .data.imagenet import devkit_to_labels, loc_solution_to_labels, write_label_file

    if bool(args.ground_truth) == bool(args.loc_solution):
        raise VGGError("give --ground-truth (with --meta) or --loc-solution")
    if args.ground_truth and not args.meta:
        raise VGGError(
            "--ground-truth needs the devkit's --meta meta.mat (its IDs are not the sorted-wnid order)"
        )
    rows = (
        devkit_to_labels(args.ground_truth, args.meta, args.images)
        if args.ground_truth
        else loc_solution_to_labels(args.loc_solution, args.images)
    )
    write_label_file(rows, args.out, force=args.force)
    print(
        f"wrote {len(rows)} rows (path,wnid) to {args.out}; use: vggnet evaluate --data {args.out} --root "
        "VAL_FOLDER"
    )


def cmd_data_shard(args) -> None:
    from .data.datasets import open_source, single_label
    from .data.shards import write_shards

    source = single_label(open_source(args.data, args.root), args.data)
    r = write_shards(source, args.out, args.per_shard, force=args.force)
    print(
        f"wrote {r['images']} images of {r['classes']} classes in {r['shards']} tar shards to {r['out']}; "
        f"train on them with --data {r['out']}"
    )


def cmd_data_tiny_imagenet(args) -> None:
    from .data.tinyimagenet import read_tiny_imagenet, write_lists

    r = write_lists(read_tiny_imagenet(args.root), args.out, force=args.force)
    print(
        f"{r['classes']} classes, {r['train']} training and {r['val']} validation images -> "
        f"{r['out']}: train.csv, val.csv, train-boxes.csv, val-boxes.csv, classes.tsv; paths are relative to "
        f"{r['root']}: pass it as --data-root (train) or --root (evaluate, loc, features)"
    )
    if r["unboxed_classes"]:
        print(
            f"{len(r['unboxed_classes'])} classes have no training boxes "
            f"({', '.join(r['unboxed_classes'][:5])}): "
            f"their images are in train.csv, not in train-boxes.csv"
        )


def cmd_data_check(args) -> None:
    from .data.datasets import images_to_check
    from .data.loaders import check_files

    images = images_to_check(args.data, args.root)
    bad = check_files(images, workers=args.workers, progress=sys.stderr.isatty())
    for path, reason in bad:
        print(f"UNREADABLE {path}: {reason}")
    print(f"checked {len(images)} images: {len(images) - len(bad)} readable, {len(bad)} unreadable")
    if bad:
        raise SystemExit(1)


def cmd_data_split(args) -> None:
    from .data.splitfile import split_file

    r = split_file(args.data, **library_kwargs(split_file, args, skip=("path",)))
    for name, part in r["parts"].items():
        print(f"{name}: {part['images']} images ({part['rows']} rows) -> {part['file']}")
    print(
        f"{r['images']} images of {r['classes']} classes split by image, stratified by class "
        f"(seed {r['seed']})"
    )


def cmd_stats(args) -> None:
    from .data.datasets import unlabelled_source
    from .data.stats import compute_stats, save_stats
    from .fileio import claim_output

    out = claim_output(args.out, "statistics", args.force)
    source = unlabelled_source(args.data, args.root)  # no labels needed: any folder of images will do
    stats = compute_stats(
        source, max_images=args.max_images, seed=args.seed, workers=args.workers, progress=sys.stderr.isatty()
    )
    save_stats(out, stats)
    mean = ", ".join(f"{v:.2f}" for v in stats["mean_rgb"])
    eig = ", ".join(f"{v:.1f}" for v in stats["pca_eigval"])
    print(f"{stats['images']} images: mean RGB [{mean}], covariance eigenvalues [{eig}] -> {out}")
    for line in stats["unreadable"]:
        print(f"skipped unreadable {line}")


# -- train / plot ----------------------------------------------------------------------------------
def add_train_arguments(s, defaults: dict | None = None, hidden=()) -> None:
    """Every TrainConfig setting as a flag; `defaults` are the command's own (shown in --help)."""
    import dataclasses

    from .engine.config import CHOICES, HELP, TrainConfig, field_types

    s.add_argument(
        "--config",
        metavar="RECIPE.yaml",
        help="YAML recipe (configs/, or a shipped recipe's name); "
        "flags override it; with --resume, the run's own config.yaml by default",
    )
    types_ = field_types()
    for f in dataclasses.fields(TrainConfig):
        if f.name in hidden:
            continue
        flag = "--" + f.name.replace("_", "-")
        t = types_[f.name]
        default = (defaults or {}).get(f.name, f.default)
        shown = HELP[f.name]
        if "default" not in shown:  # a help text that says its own default is not given a second one
            shown += f" (default {default if default not in ('', None) else 'none'})"
        if f.name == "resume":
            s.add_argument(
                flag, nargs="?", const=True, default=None, type=resume_mode, metavar="auto", help=HELP[f.name]
            )
        elif t is bool:
            s.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=shown)
        else:
            s.add_argument(
                flag,
                dest=f.name,
                type=str if f.name in ("scale",) else t,
                default=None,
                choices=CHOICES.get(f.name),
                help=shown,
            )


def cmd_train(args, make_config=None) -> None:
    """`make_config(recipe, overrides)`: the command's config builder (default ``load_config``)."""
    import dataclasses
    import os

    from . import localization  # noqa: F401  (registers box regression with the training loop)
    from .engine import load_config, train
    from .engine.config import TrainConfig, resume_recipe

    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    recipe = resume_recipe(args.config, args.out, args.resume)  # `--resume --out RUN` alone continues it
    cfg = (make_config or load_config)(recipe, overrides)
    result = train(cfg)
    if result["status"] == "interrupted":
        print(f"interrupted: {result['stop_reason']} ({result['run_dir']})", file=sys.stderr)
        raise SystemExit(130)
    if int(os.environ.get("RANK", "0")) == 0:
        best = result.get("best") or {}
        figures = ", ".join(
            f"{k.replace('_err', '').replace('_', ' ')} {v:.2f}%"
            for k, v in best.items()
            if k.endswith("_err")
        )
        print(
            f"done after {result['epochs']} epochs ({result.get('stop_reason', '')}); best validation: "
            f"{figures or '-'} (epoch {best.get('epoch', '-')}); weights: {result['best_weights']}, "
            f"{result['final']}"
        )


def cmd_plot(args) -> None:
    from .engine.plot import plot_run
    from .fileio import claim_output

    out = Path(args.out) if args.out else Path(args.run_dir) / "curves.png"
    claim_output(out, "PNG", args.force or not args.out)  # the run's own curves.png is redrawn
    print(plot_run(args.run_dir, out))


# -- evaluate / fuse / report -------------------------------------------------------------------------
def cmd_evaluate(args) -> None:
    from .eval.runner import EvalOptions, evaluate, format_table

    options = library_kwargs(
        EvalOptions, args, protocols=args.protocol, data_root=args.root, progress=sys.stderr.isatty()
    )
    result = evaluate(args.checkpoint, args.data, out=args.out, force=args.force, **options)
    print(format_table(result))
    if args.out:
        print(f"posteriors and results saved in {args.out}")


def cmd_fuse(args) -> None:
    from .eval.fusion import format_fusion, fuse, save_fusion
    from .eval.posteriors import POSTERIORS, RESULTS
    from .fileio import claim_folder

    if args.out:
        claim_folder(args.out, {POSTERIORS: "posteriors", RESULTS: "results"}, args.force)
    result = fuse(args.dirs, args.protocol)
    print(format_fusion(result))
    if args.out:
        save_fusion(args.out, result)
        print(f"fused posteriors saved in {args.out}")


def cmd_report(args) -> None:
    """Tables from saved results, each kind in its paper's layout: classification (Tables 3-6),
    localisation (Tables 8-9), transfer (Table 11)."""
    from .eval.posteriors import RESULTS
    from .eval.report import collect_rows, markdown, to_csv
    from .fileio import claim_output, read_json, write_text
    from .localization.report import loc_tables

    md_path = csv_path = None
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() not in (".md", ".csv"):
            raise VGGError(f"--out {out}: give a .md (Markdown, with a .csv beside it) or a .csv file name")
        md_path, csv_path = (
            claim_output(out.with_suffix(s), k, args.force) for s, k in ((".md", "Markdown"), (".csv", "CSV"))
        )
    kinds: dict[str, list] = {}
    for d in args.dirs:
        path = Path(d) / RESULTS
        if not path.is_file():
            raise VGGError(f"no results in {d} (expected {path})")
        kinds.setdefault(str(read_json(path, "results file").get("kind", "classification")), []).append(d)
    md, csv = "", ""
    if "classification" in kinds:
        rows = collect_rows(kinds["classification"], per_scale=args.per_scale)
        title = args.title or ("Tables 3-6 layout: classification error" if len(kinds) > 1 else None)
        md, csv = markdown(rows, title), to_csv(rows)
    transfer = kinds.get("single", []) + kinds.get("multi", [])
    if transfer:
        from .transfer.report import table11

        md += ("\n" if md else "") + table11(transfer, title="Table 11 layout: deep features + linear SVMs")
        csv += table11(transfer, style="csv")
    if "localisation" in kinds:
        results = [
            dict(read_json(Path(d) / RESULTS, "results file"), run=str(d)) for d in kinds["localisation"]
        ]
        md += ("\n" if md else "") + loc_tables(results, "markdown")
        csv += loc_tables(results, "csv")
    print(md, end="")
    if md_path:
        write_text(md_path, md)
        write_text(csv_path, csv)
        print(f"wrote {md_path} and {csv_path}")


# -- localisation (Appendix A) ------------------------------------------------------------------------
def cmd_loc_train(args) -> None:
    """App. A: a box regressor started from a classification net (its shape and training scale
    unless the recipe or the flags say otherwise: ``localization.objective.box_config``)."""
    from .localization.objective import box_config

    cmd_train(args, make_config=box_config)


def cmd_loc_evaluate(args) -> None:
    from .localization.evaluate import LocOptions, evaluate_loc
    from .localization.report import loc_tables

    options = library_kwargs(
        LocOptions, args, protocols=tuple(args.protocol), data_root=args.root, progress=True
    )
    r = evaluate_loc(
        args.checkpoint, args.data, out=args.out, force=args.force, gallery=args.gallery, **options
    )
    print(loc_tables([r], "text"))
    if args.out:
        print(
            f"boxes and results saved in {args.out}"
            + (f"; gallery: {r['gallery']}" if r.get("gallery") else "")
        )


def cmd_loc_merge(args) -> None:
    from .localization.evaluate import merge_runs
    from .localization.report import loc_tables
    from .tables import columns, render

    r = merge_runs(
        args.dirs, args.data, **library_kwargs(merge_runs, args, skip=("dirs", "data"), data_root=args.root)
    )
    if r["tuned"]:
        k = args.top_k
        print(
            render(
                r["tuned"],
                columns(
                    ("threshold t", "threshold", "{:g}"),
                    ("top-1 loc err", "top1_loc_err", "{:.1f}%"),
                    (f"top-{k} loc err", f"top{k}_loc_err", "{:.1f}%"),
                ),
                title=f"merging threshold on {r['images']} images (chosen: t={r['dense']['threshold']:g})",
            )
        )
        best = min(r["tuned"], key=lambda row: (row[f"top{k}_loc_err"], row["threshold"]))
        if best.get("note"):
            print(f"note: {best['note']}")
    print(loc_tables([r], "text"))


# -- deep features and linear SVMs (Appendix B) --------------------------------------------------------
def cmd_features(args) -> None:
    from .transfer.commands import features_command
    from .transfer.descriptors import features_from_checkpoint

    skip = ("checkpoint", "data", "scales", "layer")
    options = library_kwargs(features_from_checkpoint, args, skip=skip, data_root=args.root, progress=True)
    r = features_command(
        args.checkpoint, args.data, args.out, args.scales, args.layer, force=args.force, **options
    )
    print(
        f"{r['images']} images ({r['label_kind']}-label, {r['classes']} classes): {r['layer']} descriptors "
        f"({r['dim']}-D) at Q={','.join(map(str, r['scales']))}, {r['images_per_s']:.1f} images/s -> "
        f"{r['out']}" + (f"; {len(r['unreadable'])} unreadable images left out" if r["unreadable"] else "")
    )


def parse_cs(text: str) -> list[float]:
    """--C 0.01,0.1,1: a grid of positive, finite regularisation constants."""
    import math

    try:
        cs = [float(v) for v in text.split(",")]
    except ValueError:
        raise VGGError(f"--C takes comma-separated numbers, e.g. 0.01,0.1,1; got {text!r}") from None
    if not cs or not all(math.isfinite(c) and c > 0 for c in cs):
        raise VGGError(f"--C values must be positive and finite, got {text!r}")
    return sorted(set(cs))


def cmd_transfer(args) -> None:
    from .data.transforms import parse_scales
    from .transfer.commands import transfer_command
    from .transfer.report import table11

    r = transfer_command(
        args.features,
        args.out,
        protocol=args.protocol,
        combine=args.combine,
        scales=parse_scales(args.scales) if args.scales else None,
        splits=args.splits,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class or None,
        splits_file=args.splits_file,
        test_features=args.test_features,
        test_fraction=args.test_fraction,
        seed=args.seed,
        dataset=args.dataset,
        force=args.force,
        **({"Cs": parse_cs(args.C)} if args.C else {}),
    )
    print(table11([r], style="text"))
    if r["kind"] == "single":
        print("chosen C per split: " + ", ".join(f"{s['C']:g}" for s in r["per_split"]))
    else:
        print(f"area-under-curve mAP: {r['metrics']['area under curve']['mean']:.1f}; chosen C: {r['C']:g}")
    if args.out:
        print(
            f"results, per-class figures{', splits and confusion matrix' if r['kind'] == 'single' else ''} "
            f"in {args.out}"
        )


# -- demo ----------------------------------------------------------------------------------------------
def cmd_demo(args) -> None:
    import time

    from .demo import path_hint, run_demo, summary_table

    t = time.perf_counter()
    overrides = {
        k: getattr(args, k) for k in ("epochs", "crop", "scale", "arch") if getattr(args, k) is not None
    }
    result = run_demo(out=args.out, data=args.data, workers=args.workers, **overrides)
    print()
    print(summary_table(result))
    print(f"\nreport: {result['report']}   ({time.perf_counter() - t:.0f} s)")
    if path_hint():
        print(f"next: {path_hint()}")


# -- parser ------------------------------------------------------------------------------------------
def _commands_localisation(sub) -> None:
    from .localization.objective import INHERITED_SETTINGS, LOC_DEFAULTS

    s = sub.add_parser(
        "loc", help="localisation (Appendix A): box-regression nets, protocols 1 and 2, merging"
    )
    lsub = s.add_subparsers(dest="loc_command", metavar="LOC_COMMAND")
    lsub.required = True
    s = lsub.add_parser(
        "train",
        help="train a box regressor (SCR/PCR) from a classification net, L2 loss",
        description="App. A: the classification net of --init-from with its last layer replaced by "
        "a box regressor, trained with a Euclidean loss. Unless given, the net's shape (arch, width, "
        "fc-dim, crop, batch norm) and training scale are the classifier's; head pcr, "
        "lr 0.03 (the paper's 1e-3 is in the Table 8/9 configs).",
    )
    inherited = {k: "from --init-from" for k in INHERITED_SETTINGS}
    add_train_arguments(s, dict(LOC_DEFAULTS, **inherited), hidden=("objective",))
    s.set_defaults(func=cmd_loc_train)
    s = lsub.add_parser(
        "evaluate", help="protocol 1 (centre crop, GT class) and 2 (dense + greedy merge, top-k)"
    )
    add_input_flags(
        s,
        "box CSV (path,wnid,xmin,ymin,xmax,ymax) or folder of XML annotations",
        "root of the image paths (default: the box file's folder)",
        checkpoint="a localisation net of `vggnet loc train`",
    )
    s.add_argument("--protocol", nargs="+", default=["center", "dense"], choices=["center", "dense"])
    s.add_argument(
        "--scales", help="test scales Q of protocol 2, e.g. 352,384 (default: the training scale, §4.1)"
    )
    s.add_argument("--multi-scale", action="store_true", help="protocol 2 at three scales (§4.2)")
    s.add_argument(
        "--classifier", help="classification checkpoint giving the top-k classes (dense, multi-scale)"
    )
    s.add_argument("--posteriors", help="or the evaluation folder of `vggnet evaluate` on the same images")
    s.add_argument("--top-k", type=integer(1, 1000), default=5)
    s.add_argument(
        "--threshold", type=float, default=0.0, help="greedy-merge threshold t (tune with `loc merge --tune`)"
    )
    s.add_argument("--flip", action="store_true", help="also the boxes of the horizontally flipped image")
    s.add_argument("--gallery", type=integer(0, 1000), default=16, help="images in out/gallery.png (0: none)")
    s.add_argument("--on-bad-box", choices=["fail", "skip"], default="fail")
    add_output_flags(
        s,
        "folder for boxes.safetensors, results.json and gallery.png",
        force="replace results saved in --out before",
    )
    add_runtime_flags(s)
    s.set_defaults(func=cmd_loc_evaluate)
    s = lsub.add_parser(
        "merge", help="protocol 2 from saved boxes: tune the threshold, fuse nets (no network run)"
    )
    s.add_argument(
        "dirs", nargs="+", help="folders of `vggnet loc evaluate --out` (several: fusion, the union of boxes)"
    )
    s.add_argument("--data", required=True, help="the box data those folders were evaluated on")
    s.add_argument("--root")
    s.add_argument("--threshold", type=float, help="greedy-merge threshold t (default 0)")
    s.add_argument("--tune", action="store_true", help="choose t on --data (give held-out images)")
    s.add_argument("--top-k", type=integer(1, 1000), default=5)
    s.add_argument("--on-bad-box", choices=["fail", "skip"], default="fail")
    add_output_flags(s, "folder for results.json")
    s.set_defaults(func=cmd_loc_merge)


def _commands_deploy(sub) -> None:
    from .eval.protocols import ALL_PROTOCOLS

    s = sub.add_parser("predict", help="top-5 classes of images, with names and probabilities")
    s.add_argument("images", nargs="+")
    s.add_argument(
        "--checkpoint", required=True, help="vggnet weights (convert torchvision/Caffe files first)"
    )
    s.add_argument("--protocol", default="dense", choices=ALL_PROTOCOLS)
    s.add_argument("--multi-scale", action="store_true", help="three test scales (§4.2)")
    s.add_argument("--scales", help="test scales Q, e.g. 256,384,512")
    s.add_argument("--top", type=integer(1, 100_000), default=5)
    s.add_argument("--json", action="store_true", help="JSON instead of tables")
    add_runtime_flags(s, workers=False)
    s.set_defaults(func=cmd_predict)
    s = sub.add_parser("export", help="ONNX model with the preprocessing inside, checked with ONNX Runtime")
    s.add_argument("checkpoint")
    s.add_argument("--onnx", required=True, help="file to write")
    s.add_argument("--dense", action="store_true", help="the fully-convolutional score map (dynamic H, W)")
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_export)


def _commands_transfer(sub) -> None:
    s = sub.add_parser(
        "features", help="Appendix B descriptors of a data set (dense, flips, per scale) -> features file"
    )
    add_input_flags(
        s,
        "image folder, tar shards, path,label CSV, or multi-label CSV (path,class1,...)",
        "root of the paths in a CSV",
    )
    s.add_argument("--scales", help="Q values (default: 256,384,512 scaled by crop/224)")
    s.add_argument(
        "--layer", default="fc7", help="fc7 (default), fc6, pool5, conv5_3, ...: global-average-pooled"
    )
    add_output_flags(s, "features file to write (.safetensors)", required=True)
    add_runtime_flags(s)
    s.add_argument("--batch-size", type=integer(1, 100_000), default=16)
    s.add_argument("--skip-unreadable", action="store_true")
    s.set_defaults(func=cmd_features)
    s = sub.add_parser(
        "transfer", help="linear SVMs on saved features: Caltech-style splits or VOC-style mAP"
    )
    s.add_argument("features", nargs="+", help="features files (several: late fusion, stacked in this order)")
    s.add_argument("--protocol", choices=["auto", "splits", "multilabel"], default="auto")
    s.add_argument(
        "--combine",
        choices=["auto", "stack", "average", "max"],
        default="auto",
        help="across Q (auto, as Appendix B: stack for the splits protocol, average for multilabel/VOC)",
    )
    s.add_argument("--scales", help="a subset of the saved Q values (default: all)")
    s.add_argument("--splits", type=integer(1, 100), default=3)
    s.add_argument("--train-per-class", type=integer(1, 1_000_000), default=30)
    s.add_argument("--test-per-class", type=integer(0, 1_000_000), default=50, help="0: all the rest")
    s.add_argument("--splits-file", help="reuse the splits saved by an earlier run (splits.json)")
    s.add_argument("--test-features", nargs="+", help="multilabel: the test set's features files")
    s.add_argument("--test-fraction", type=float, default=0.5, help="multilabel without --test-features")
    s.add_argument("--C", help="comma-separated grid of C (default 1e-3 ... 1e2)")
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--dataset", help="data set name for the tables (default: the data folder's name)")
    add_output_flags(s, "folder for results.json, per_class.csv, splits.json, confusion.png")
    s.set_defaults(func=cmd_transfer)


def _commands_demo(sub) -> None:
    s = sub.add_parser(
        "demo", help="the whole system on built-in data: synth, stats, train, evaluate, report"
    )
    s.add_argument("--out", help="new report folder (default: ./vggnet-demo-<time>)")
    s.add_argument(
        "--data",
        help="your image folder (class sub-folders, or train/ and val/) instead of the synthetic set",
    )
    s.add_argument("--epochs", type=integer(1, 100_000), help="epoch cap (default 25)")
    s.add_argument("--arch", help="config (default A)")
    s.add_argument("--crop", type=int, help="crop size (default 32)")
    s.add_argument("--scale", help="training scale S or Smin:Smax (default 32:48)")
    s.add_argument("--workers", type=WORKERS)
    s.set_defaults(func=cmd_demo)


def _commands_weights(sub) -> None:
    s = sub.add_parser("info", help="the model zoo: Tables 1 and 2")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser(
        "convert",
        help="convert weights: torchvision or Caffe files to vggnet's format, and vggnet's to torchvision's",
    )
    s.add_argument("src", help="input weights (.pth / .safetensors / .caffemodel)")
    s.add_argument("dst", help="output file")
    s.add_argument(
        "--to",
        choices=["vggnet", "torchvision"],
        help="output format (default: torchvision if SRC is a vggnet file, else vggnet)",
    )
    s.add_argument(
        "--arch", help="expected torchvision architecture (vgg11, vgg16_bn, D, ...); inferred if omitted"
    )
    s.add_argument(
        "--classes",
        help="text file with one class name per line, in output order (default: "
        "SRC's NAME.classes.txt, or the ImageNet-1k wnids for 1000 outputs)",
    )
    s.add_argument(
        "--prototxt", help="the Caffe release's deploy .prototxt (optional; layer names and order)"
    )
    s.add_argument(
        "--force", action="store_true", help="replace DST if it exists (a file of the same kind only)"
    )
    s.set_defaults(func=cmd_convert)


def _commands_data(sub) -> None:
    s = sub.add_parser(
        "data", help="data sets: make the synthetic one, check one for unreadable files, split one"
    )
    dsub = s.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    dsub.required = True
    d = dsub.add_parser("synth", help="write the built-in synthetic data set (JPEGs, folder layout, boxes)")
    d.add_argument("--out", required=True, help="new folder to write")
    d.add_argument("--classes", type=integer(1, 40), default=10)
    d.add_argument("--per-class", type=integer(1, 100_000), default=100, help="training images per class")
    d.add_argument(
        "--val-per-class", type=integer(1, 100_000), help="validation images per class (default: per-class/4)"
    )
    d.add_argument("--size", type=integer(32, 1024), default=96, help="image side in pixels")
    d.add_argument("--seed", type=SEED, default=0)
    d.add_argument("--workers", type=WORKERS, default=_default_workers())
    d.set_defaults(func=cmd_data_synth)
    d = dsub.add_parser(
        "imagenet-labels", help="ILSVRC-2012 validation ground truth -> a path,wnid label file"
    )
    d.add_argument("--ground-truth", help="the devkit's ILSVRC2012_validation_ground_truth.txt")
    d.add_argument("--meta", help="the devkit's meta.mat (maps its ILSVRC2012_IDs to wnids)")
    d.add_argument("--loc-solution", help="or LOC_val_solution.csv")
    d.add_argument("--images", help="the validation image folder, to check every listed image exists")
    add_output_flags(d, "CSV to write", required=True)
    d.set_defaults(func=cmd_data_imagenet_labels)
    _data_format_commands(dsub)
    d = dsub.add_parser("check", help="decode every image and list the unreadable ones with their reason")
    d.add_argument("data", help="image folder (any layout) or .csv/.tsv label file")
    d.add_argument("--root", help="root of the paths in a label file (default: its folder)")
    d.add_argument("--workers", type=WORKERS, default=_default_workers())
    d.set_defaults(func=cmd_data_check)

    d = dsub.add_parser(
        "split",
        help="split a label or box file by image into train / val / tune files (seeded)",
        description="Every row of an image goes to one part; the parts are stratified by "
        "class and depend on --seed alone. Writes NAME-train.csv, NAME-val.csv and, with "
        "--tune, NAME-tune.csv (App. A: the merging threshold is tuned on images held out of "
        "both).",
    )
    d.add_argument("data", help="label file (path,label) or box file (path,wnid,xmin,ymin,xmax,ymax)")
    d.add_argument(
        "--val", type=float, default=0.1, help="fraction of the images for validation (default 0.1)"
    )
    d.add_argument(
        "--tune", type=float, default=0.0, help="fraction of the images for tuning (default 0: none)"
    )
    d.add_argument("--seed", type=SEED, default=0)
    d.add_argument("--root", help="root of the paths in the file (default: its folder)")
    d.add_argument(
        "--out-dir",
        help="folder for the parts (default: the file's folder); paths are rewritten relative to it",
    )
    d.add_argument("--force", action="store_true", help="replace parts written before")
    d.set_defaults(func=cmd_data_split)


def _data_format_commands(dsub) -> None:
    """Commands that write a data set in another storage format (tar shards, Tiny ImageNet's CSVs)."""
    d = dsub.add_parser(
        "shard", help="copy a data set into uncompressed tar shards (WebDataset naming, indexed)"
    )
    d.add_argument("data", help="image folder (class sub-folders) or .csv/.tsv label file")
    d.add_argument("--root", help="root of the paths in a label file")
    d.add_argument("--out", required=True, help="folder for shard-NNNNNN.tar and shards.json")
    d.add_argument("--per-shard", type=integer(1, 10_000_000), default=1000, help="images per shard")
    d.add_argument("--force", action="store_true", help="replace shards written before")
    d.set_defaults(func=cmd_data_shard)
    d = dsub.add_parser("tiny-imagenet", help="Tiny ImageNet-200's layout -> label and box CSVs (train, val)")
    d.add_argument("root", help="the tiny-imagenet-200 folder (wnids.txt, words.txt, train/, val/)")
    add_output_flags(
        d,
        "folder for train.csv, val.csv, train-boxes.csv, val-boxes.csv, classes.tsv",
        required=True,
        force="replace those files if they exist",
    )
    d.set_defaults(func=cmd_data_tiny_imagenet)


def _commands_stats(sub) -> None:
    s = sub.add_parser(
        "stats", help="training-set mean RGB and RGB covariance eigen-pairs (for PCA colour shift)"
    )
    s.add_argument("data", help="image folder (any layout) or .csv/.tsv label file")
    s.add_argument("--out", required=True, help="JSON file to write")
    s.add_argument("--root", help="root of the paths in a label file")
    s.add_argument("--max-images", type=integer(1, 10_000_000), default=10_000)
    s.add_argument("--force", action="store_true", help="replace an existing statistics file")
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--workers", type=WORKERS, default=_default_workers())
    s.set_defaults(func=cmd_stats)


def _commands_train(sub) -> None:
    s = sub.add_parser("train", help="train a net with the paper's recipe (YAML recipe + flag overrides)")
    add_train_arguments(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("plot", help="draw a run's loss, error and learning-rate curves to PNG")
    s.add_argument("run_dir")
    add_output_flags(
        s,
        "PNG file (default RUN_DIR/curves.png, redrawn each time)",
        force="replace an existing PNG given as --out",
    )
    s.set_defaults(func=cmd_plot)


def _commands_evaluation(sub) -> None:
    from .eval.protocols import ALL_PROTOCOLS as PROTOCOLS

    s = sub.add_parser("evaluate", help="evaluate a checkpoint with the paper's protocols (§3.2, §4)")
    add_input_flags(
        s,
        "image folder (class sub-folders), tar shards or .csv/.tsv label file",
        "root of the paths in a label file",
    )
    s.add_argument(
        "--protocol",
        nargs="+",
        default=["dense"],
        choices=PROTOCOLS,
        metavar="P",
        help=f"one or more of: {', '.join(PROTOCOLS)} (default dense)",
    )
    s.add_argument(
        "--scales", help="test scales Q, e.g. 256,384,512 (default: from the training scale, §4.1)"
    )
    s.add_argument(
        "--multi-scale",
        action="store_true",
        help="default scales per §4.2 ({S-32,S,S+32} or {Smin,mid,Smax})",
    )
    s.add_argument("--out", help="folder for posteriors.safetensors and results.json")
    add_runtime_flags(s)
    s.add_argument("--batch-size", type=integer(1, 100_000), default=32, help="equal-sized images per batch")
    s.add_argument("--half", action="store_true", help="store posteriors as float16")
    s.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="exclude unreadable images (counted) instead of failing",
    )
    s.add_argument("--force", action="store_true", help="overwrite results in --out")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("fuse", help="ensemble errors from saved posteriors (Table 6), no network run")
    s.add_argument("dirs", nargs="+", help="evaluation folders")
    s.add_argument("--protocol", choices=PROTOCOLS)
    add_output_flags(s, "folder to save the fused posteriors", force="replace a fusion saved in --out before")
    s.set_defaults(func=cmd_fuse)

    s = sub.add_parser(
        "report", help="Markdown + CSV table of evaluation folders, in the layout of Tables 3-6"
    )
    s.add_argument("dirs", nargs="+")
    add_output_flags(
        s, "Markdown file to write (a .csv is written beside it)", force="replace existing tables"
    )
    s.add_argument("--title")
    s.add_argument("--per-scale", action="store_true", help="also one row per single test scale")
    s.set_defaults(func=cmd_report)


COMMAND_GROUPS = [
    _commands_demo,
    _commands_weights,
    _commands_data,
    _commands_stats,
    _commands_train,
    _commands_evaluation,
    _commands_localisation,
    _commands_transfer,
    _commands_deploy,
]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="vggnet",
        description="Very Deep ConvNets (Simonyan & Zisserman 2015). "
        "Add --debug anywhere to see the traceback of an error.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in COMMAND_GROUPS:
        add(sub)
    return p


def integer(lo: int, hi: int):
    """An argparse type: an integer in [lo, hi], refused with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo:,} and {hi:,}, got {value:,}")
        return value

    parse.__name__ = "integer"
    return parse


WORKERS, SEED = integer(0, 256), integer(0, 2**32 - 1)


def resume_mode(text: str) -> str:
    """An argparse type: the one value ``--resume`` takes (alone, it continues the run)."""
    if text != "auto":
        raise argparse.ArgumentTypeError(f"expected nothing or `auto`, got {text!r}")
    return text


def _default_workers() -> int:
    import os

    return min(8, max(1, (os.cpu_count() or 1)))


def add_input_flags(s, data: str, root: str, checkpoint: str | None = None) -> None:
    """--checkpoint, --data and --root, for every command that runs a net over a data set."""
    s.add_argument("--checkpoint", required=True, help=checkpoint)
    s.add_argument("--data", required=True, help=data)
    s.add_argument("--root", help=root)


def add_output_flags(
    s, out: str, required: bool = False, force: str = "replace what is there (a file of the same kind only)"
) -> None:
    """--out and --force, one spelling for every command that writes (fileio.claim_output refuses
    to replace without --force)."""
    s.add_argument("--out", required=required, help=out)
    s.add_argument("--force", action="store_true", help=force)


def library_kwargs(target, args, skip=(), **given) -> dict:
    """The keywords of `target` (an options dataclass, or a function's parameters less `skip`) read
    from the flags of the same name: one spelling from the command line to the library. `given`:
    the flags renamed or converted on the way (``--root`` -> ``data_root``)."""
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(target):
        names = [f.name for f in dataclasses.fields(target)]
    else:
        params = inspect.signature(target).parameters.values()
        names = [q.name for q in params if q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
    return {**{n: getattr(args, n) for n in names if n not in skip and hasattr(args, n)}, **given}


def add_runtime_flags(s, workers: bool = True) -> None:
    """The device policy's flags (runtime/device.py), one spelling for every command that runs a net."""
    s.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    s.add_argument(
        "--amp",
        choices=["auto", "on", "off"],
        default="auto",
        help="bf16 autocast (auto: on CUDA and on CPUs with amx_bf16/avx512_bf16; off: fp32)",
    )
    s.add_argument(
        "--channels-last",
        choices=["auto", "on", "off"],
        default="auto",
        help="NHWC activations (auto: on, measured faster on CPU and GPU)",
    )
    if workers:
        s.add_argument("--workers", type=WORKERS, default=_default_workers())


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in the project's one-line form."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _subcommands(parser) -> dict:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def refuse_unknown(parser, args, extra: list[str]) -> None:
    """An unknown argument is refused by the sub-command it was given to, with the closest flag
    of that sub-command (``--widht`` -> ``--width``)."""
    import difflib

    for dest in ("command", "data_command", "loc_command"):
        name = getattr(args, dest, None)
        if name in _subcommands(parser):
            parser = _subcommands(parser)[name]
    flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    unknown_flags = [e.split("=")[0] for e in extra if e.startswith("-")]
    guess = difflib.get_close_matches(unknown_flags[0], flags, n=1) if unknown_flags else []
    parser.error(
        f"unrecognized arguments: {' '.join(extra)}" + (f"; did you mean {guess[0]}?" if guess else "")
    )


def main(argv=None) -> int:
    """The error boundary: every failure becomes one line and exit status 2 (``--debug``: the
    traceback too); a closed pipe ends quietly; Ctrl-C is status 130."""
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")  # paths that are not valid UTF-8
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        refuse_unknown(parser, args, extra)
    command = " ".join(
        filter(None, (args.command, getattr(args, "data_command", None), getattr(args, "loc_command", None)))
    )
    try:
        args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `vggnet info | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"vggnet {command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as e:
        if debug:
            raise
        print(f"vggnet {command}: error: {describe(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
