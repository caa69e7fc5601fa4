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

    cols = columns("config", "weight layers", ("parameters", "params", "{:,}"), ("(M)", "millions", "{:.0f}"),
                   ("GMACs@224", "gmacs", "{:.2f}"), "torchvision", "conv stages (Table 1)")
    rows = []
    for arch in list_models():
        c = complexity(arch)
        rows.append({"config": arch, "weight layers": c["weight_layers"], "params": c["params"],
                     "millions": c["params"] / 1e6, "gmacs": c["macs"] / 1e9,
                     "torchvision": TORCHVISION_NAMES.get(arch, "-"), "conv stages (Table 1)": " | ".join(TABLE1[arch])})
    print(render(rows, cols))
    print("\nEvery net ends with FC-4096, FC-4096, FC-1000 and soft-max; all convs stride 1, "
          "5 max-pools 2x2/2 (§2.1).")


def cmd_convert(args) -> None:
    from .models.configs import TORCHVISION_NAMES
    from .models.convert import convert

    r = convert(args.src, args.dst, args.to, **({} if args.to == "torchvision" else
                                                dict(arch=args.arch, classes_path=args.classes, prototxt=args.prototxt)),
                force=args.force)
    if r["to"] == "torchvision":
        print(f"wrote torchvision state dict of config {r['arch']} ({TORCHVISION_NAMES.get(r['arch'], '?')}"
              f"{'_bn' if r['batch_norm'] else ''}) to {r['dst']}, class names to {r['classes_file']}"
              + (f"; {r['folded']}" if r["folded"] else ""))
    else:
        print(f"wrote config {r['arch']} ({r['classes']} classes, {r['source']} preprocessing: {r['preprocessing']}) "
              f"to {r['dst']}")


# -- data ------------------------------------------------------------------------------------------
def cmd_data_synth(args) -> None:
    from .data.synth import make_synthetic

    info = make_synthetic(args.out, classes=args.classes, per_class=args.per_class,
                          val_per_class=args.val_per_class, size=args.size, seed=args.seed,
                          workers=args.workers)
    print(f"wrote {info['train']} training and {info['val']} validation images of {len(info['classes'])} "
          f"classes ({info['size']}px) to {info['root']}")


def cmd_data_check(args) -> None:
    from .data.datasets import image_files
    from .data.loaders import check_files

    paths = image_files(args.data, args.root)
    bad = check_files(paths, workers=args.workers, progress=sys.stderr.isatty())
    for path, reason in bad:
        print(f"UNREADABLE {path}: {reason}")
    print(f"checked {len(paths)} files: {len(paths) - len(bad)} readable, {len(bad)} unreadable")
    if bad:
        raise SystemExit(1)


def cmd_stats(args) -> None:
    from .data.datasets import open_source
    from .data.stats import compute_stats, save_stats
    from .fileio import claim_output

    out = claim_output(args.out, "statistics", args.force)
    source = open_source(args.data, args.root)
    stats = compute_stats(source, max_images=args.max_images, seed=args.seed, workers=args.workers,
                          progress=sys.stderr.isatty())
    save_stats(out, stats)
    mean = ", ".join(f"{v:.2f}" for v in stats["mean_rgb"])
    eig = ", ".join(f"{v:.1f}" for v in stats["pca_eigval"])
    print(f"{stats['images']} images: mean RGB [{mean}], covariance eigenvalues [{eig}] -> {out}")
    for line in stats["unreadable"]:
        print(f"skipped unreadable {line}")


# -- train / plot ----------------------------------------------------------------------------------
def add_train_arguments(s) -> None:
    import dataclasses

    from .engine.config import CHOICES, TrainConfig, field_types

    s.add_argument("--config", metavar="RECIPE.yaml", help="YAML recipe (configs/); flags override it")
    types_ = field_types()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        t = types_[f.name]
        if f.name == "resume":
            s.add_argument(flag, action="store_true", default=None, help="continue the run in --out")
        elif t is bool:
            s.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"(default {f.default})")
        else:
            s.add_argument(flag, dest=f.name, type=str if f.name in ("scale",) else t, default=None,
                           choices=CHOICES.get(f.name), help=f"(default {f.default})")


def cmd_train(args) -> None:
    import dataclasses

    from .engine import load_config, train
    from .engine.config import TrainConfig

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    cfg = load_config(args.config, overrides)
    result = train(cfg)
    if result["status"] == "interrupted":
        print(f"interrupted: {result['stop_reason']} ({result['run_dir']})", file=sys.stderr)
        raise SystemExit(130)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        best = result.get("best") or {}
        print(f"done after {result['epochs']} epochs ({result.get('stop_reason', '')}); best val top-1 "
              f"{best.get('top1_err', float('nan')):.2f}%, top-5 {best.get('top5_err', float('nan')):.2f}% "
              f"(epoch {best.get('epoch', '-')}); weights: {result['best_weights']}, {result['final']}")


def cmd_plot(args) -> None:
    from .engine.plot import plot_run
    from .fileio import claim_output

    out = Path(args.out) if args.out else Path(args.run_dir) / "curves.png"
    claim_output(out, "PNG", args.force or not args.out)  # the run's own curves.png is redrawn
    print(plot_run(args.run_dir, out))


# -- evaluate / fuse / report -------------------------------------------------------------------------
def cmd_evaluate(args) -> None:
    from .eval.runner import evaluate, format_table, parse_scales

    result = evaluate(args.checkpoint, args.data, args.protocol, out=args.out, force=args.force,
                      scales=parse_scales(args.scales) if args.scales else None, multi_scale=args.multi_scale,
                      device=args.device, amp="off" if args.no_amp else "auto", workers=args.workers,
                      batch_size=args.batch_size, half=args.half, skip_unreadable=args.skip_unreadable,
                      data_root=args.root, progress=sys.stderr.isatty())
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
    from .eval.report import collect_rows, markdown, to_csv
    from .fileio import claim_output, write_text

    md_path = csv_path = None
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() not in (".md", ".csv"):
            raise VGGError(f"--out {out}: give a .md (Markdown, with a .csv beside it) or a .csv file name")
        md_path, csv_path = (claim_output(out.with_suffix(s), k, args.force) for s, k in ((".md", "Markdown"), (".csv", "CSV")))
    rows = collect_rows(args.dirs, per_scale=args.per_scale)
    md = markdown(rows, args.title)
    print(md, end="")
    if md_path:
        write_text(md_path, md)
        write_text(csv_path, to_csv(rows))
        print(f"wrote {md_path} and {csv_path}")


# -- demo ----------------------------------------------------------------------------------------------
def cmd_demo(args) -> None:
    import time

    from .demo import run_demo, summary_table

    t = time.perf_counter()
    overrides = {k: getattr(args, k) for k in ("epochs", "crop", "scale", "arch") if getattr(args, k) is not None}
    result = run_demo(out=args.out, data=args.data, workers=args.workers, **overrides)
    print()
    print(summary_table(result))
    print(f"\nreport: {result['report']}   ({time.perf_counter() - t:.0f} s)")


# -- parser ------------------------------------------------------------------------------------------
def _commands_demo(sub) -> None:
    s = sub.add_parser("demo", help="the whole system on built-in data: synth, stats, train, evaluate, report")
    s.add_argument("--out", help="new report folder (default: ./vggnet-demo-<time>)")
    s.add_argument("--data", help="your image folder (class sub-folders, or train/ and val/) instead of the synthetic set")
    s.add_argument("--epochs", type=integer(1, 100_000), help="epoch cap (default 25)")
    s.add_argument("--arch", help="config (default A)")
    s.add_argument("--crop", type=int, help="crop size (default 32)")
    s.add_argument("--scale", help="training scale S or Smin:Smax (default 32:48)")
    s.add_argument("--workers", type=WORKERS)
    s.set_defaults(func=cmd_demo)


def _commands_weights(sub) -> None:
    s = sub.add_parser("info", help="the model zoo: Tables 1 and 2")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("convert", help="convert weights: torchvision or Caffe files in, torchvision files out")
    s.add_argument("src", help="input weights (.pth / .safetensors / .caffemodel)")
    s.add_argument("dst", help="output file")
    s.add_argument("--to", choices=["vggnet", "torchvision"],
                   help="output format (default: torchvision if SRC is a vggnet file, else vggnet)")
    s.add_argument("--arch", help="expected torchvision architecture (vgg11, vgg16_bn, D, ...); inferred if omitted")
    s.add_argument("--classes", help="text file with one class name per line, in output order (default: "
                   "SRC's NAME.classes.txt, or the ImageNet-1k wnids for 1000 outputs)")
    s.add_argument("--prototxt", help="the Caffe release's deploy .prototxt (optional; layer names and order)")
    s.add_argument("--force", action="store_true", help="replace DST if it exists (a file of the same kind only)")
    s.set_defaults(func=cmd_convert)


def _commands_data(sub) -> None:
    s = sub.add_parser("data", help="data sets: make the synthetic one, check one for unreadable files")
    dsub = s.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    dsub.required = True
    d = dsub.add_parser("synth", help="write the built-in synthetic data set (JPEGs, folder layout, boxes)")
    d.add_argument("--out", required=True, help="new folder to write")
    d.add_argument("--classes", type=integer(1, 40), default=10)
    d.add_argument("--per-class", type=integer(1, 100_000), default=100, help="training images per class")
    d.add_argument("--val-per-class", type=integer(1, 100_000), help="validation images per class (default: per-class/4)")
    d.add_argument("--size", type=integer(32, 1024), default=96, help="image side in pixels")
    d.add_argument("--seed", type=SEED, default=0)
    d.add_argument("--workers", type=WORKERS, default=_default_workers())
    d.set_defaults(func=cmd_data_synth)
    d = dsub.add_parser("check", help="decode every image and list the unreadable ones with their reason")
    d.add_argument("data", help="image folder (any layout) or .csv/.tsv label file")
    d.add_argument("--root", help="root of the paths in a label file (default: its folder)")
    d.add_argument("--workers", type=WORKERS, default=_default_workers())
    d.set_defaults(func=cmd_data_check)

    s = sub.add_parser("stats", help="training-set mean RGB and RGB covariance eigen-pairs (for PCA colour shift)")
    s.add_argument("data", help="image folder (class sub-folders) or .csv/.tsv label file")
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
    s.add_argument("--out", help="PNG file (default RUN_DIR/curves.png, redrawn each time)")
    s.add_argument("--force", action="store_true", help="replace an existing PNG given as --out")
    s.set_defaults(func=cmd_plot)


def _commands_evaluation(sub) -> None:
    from .eval.protocols import ALL_PROTOCOLS as PROTOCOLS

    s = sub.add_parser("evaluate", help="evaluate a checkpoint with the paper's protocols (§3.2, §4)")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True, help="image folder (class sub-folders) or .csv/.tsv label file")
    s.add_argument("--root", help="root of the paths in a label file")
    s.add_argument("--protocol", nargs="+", default=["dense"], choices=PROTOCOLS, metavar="P",
                   help=f"one or more of: {', '.join(PROTOCOLS)} (default dense)")
    s.add_argument("--scales", help="test scales Q, e.g. 256,384,512 (default: from the training scale, §4.1)")
    s.add_argument("--multi-scale", action="store_true", help="default scales per §4.2 ({S-32,S,S+32} or {Smin,mid,Smax})")
    s.add_argument("--out", help="folder for posteriors.safetensors and results.json")
    s.add_argument("--device", default="auto")
    s.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA (fp32 throughout)")
    s.add_argument("--workers", type=WORKERS, default=_default_workers())
    s.add_argument("--batch-size", type=integer(1, 100_000), default=32, help="equal-sized images per batch")
    s.add_argument("--half", action="store_true", help="store posteriors as float16")
    s.add_argument("--skip-unreadable", action="store_true", help="exclude unreadable images (counted) instead of failing")
    s.add_argument("--force", action="store_true", help="overwrite results in --out")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("fuse", help="ensemble errors from saved posteriors (Table 6), no network run")
    s.add_argument("dirs", nargs="+", help="evaluation folders")
    s.add_argument("--protocol", choices=PROTOCOLS)
    s.add_argument("--out", help="folder to save the fused posteriors")
    s.add_argument("--force", action="store_true", help="replace a fusion saved in --out before")
    s.set_defaults(func=cmd_fuse)

    s = sub.add_parser("report", help="Markdown + CSV table of evaluation folders, in the layout of Tables 3-6")
    s.add_argument("dirs", nargs="+")
    s.add_argument("--out", help="Markdown file to write (a .csv is written beside it)")
    s.add_argument("--force", action="store_true", help="replace existing tables")
    s.add_argument("--title")
    s.add_argument("--per-scale", action="store_true", help="also one row per single test scale")
    s.set_defaults(func=cmd_report)


COMMAND_GROUPS = [_commands_demo, _commands_weights, _commands_data, _commands_train, _commands_evaluation]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="vggnet", description="Very Deep ConvNets (Simonyan & Zisserman 2015). "
               "Add --debug anywhere to see the traceback of an error.")
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


def _default_workers() -> int:
    import os
    return min(8, max(1, (os.cpu_count() or 1)))


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in the project's one-line form."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    args = build_parser().parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
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
