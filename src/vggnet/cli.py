"""The ``vggnet`` command: thin. It parses arguments, builds explicit values and calls the library;
every user error becomes one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import VGGError


# -- info / convert ---------------------------------------------------------------------------------
def cmd_info(args) -> None:
    from .models import complexity, list_models
    from .models.configs import TABLE1, TORCHVISION_NAMES

    print(f"{'config':<7} {'weight layers':>13} {'parameters':>13} {'(M)':>5} {'GMACs@224':>9}  "
          f"{'torchvision':<11} conv stages (Table 1)")
    for name in list_models():
        c = complexity(name)
        stages = " | ".join(TABLE1[name])
        print(f"{name:<7} {c['weight_layers']:>13} {c['params']:>13,} {c['params'] / 1e6:>5.0f} "
              f"{c['macs'] / 1e9:>9.2f}  {TORCHVISION_NAMES.get(name, '-'):<11} {stages}")
    print("\nEvery net ends with FC-4096, FC-4096, FC-1000 and soft-max; all convs stride 1, "
          "5 max-pools 2x2/2 (§2.1).")


def cmd_convert(args) -> None:
    from .models import TORCHVISION_NAMES, export_torchvision, import_torchvision, load_model, save_weights

    src, dst = Path(args.src), Path(args.dst)
    if dst.exists() and not args.force:
        raise VGGError(f"{dst} exists; refusing to overwrite it (use --force)")
    to = args.to
    if to is None:
        to = "torchvision" if _is_vggnet_file(src) else "vggnet"
    if to == "torchvision":
        model, _ = load_model(src)
        export_torchvision(model, dst)
        print(f"wrote torchvision state dict of config {model.config} "
              f"({TORCHVISION_NAMES.get(model.config, '?')}{'_bn' if model.arch['batch_norm'] else ''}) to {dst}")
    else:
        classes = None
        if args.classes:
            classes = [line.strip() for line in Path(args.classes).read_text().splitlines() if line.strip()]
        model, meta = import_torchvision(src, arch=args.arch, classes=classes)
        save_weights(dst, model, meta)
        print(f"wrote config {model.config} ({model.arch['num_classes']} classes, torchvision "
              f"preprocessing) to {dst}")




def _is_vggnet_file(path: Path) -> bool:
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    from safetensors.torch import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return "vggnet" in (f.metadata() or {})
    except Exception:
        return False


# -- parser ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vggnet", description="Very Deep ConvNets (Simonyan & Zisserman 2015)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("info", help="the model zoo: Tables 1 and 2")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("convert", help="convert weights between torchvision and vggnet formats")
    s.add_argument("src", help="input weights (.pth / .safetensors)")
    s.add_argument("dst", help="output file")
    s.add_argument("--to", choices=["vggnet", "torchvision"],
                   help="output format (default: torchvision if SRC is a vggnet file, else vggnet)")
    s.add_argument("--arch", help="expected torchvision architecture (vgg11, vgg16_bn, D, ...); inferred if omitted")
    s.add_argument("--classes", help="text file with one class name per line, in output order")
    s.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    s.set_defaults(func=cmd_convert)

    for register in _REGISTRY:
        register(sub)
    return p


_REGISTRY: list = []


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except VGGError as e:
        print(f"vggnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vggnet {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
