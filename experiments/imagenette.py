"""The paper's experiment grid (Tables 3-6, §4.1 shallow net) on Imagenette, scaled down.

    python experiments/imagenette.py --data ../shared/data/imagenette-128 --profile cpu
    python experiments/imagenette.py --data ../shared/data/imagenette-128 --profile gpu --device cuda

Every step is a ``vggnet`` command (printed, logged, and listed in docs/RESULTS.md), run in order:
net A from scratch; B, C, D, E warm-started from A (§3.1); A-LRN and the 5x5 shallow net from
scratch; C, D, E at the second fixed scale from their first-scale nets (lr / 10); C, D, E with scale
jittering fine-tuned from the second-scale nets; then evaluation with every protocol, single and
multi-scale, and the fusion of D and E. Finished steps are skipped, so the script resumes.

Profiles (the paper's numbers times crop/224):
- ``gpu``: crop 128, S in {146, 219}, jitter [146, 292]; the paper's widths, no BN, dropout 0.5.
- ``cpu``: crop 32, S in {37, 55}, jitter [37, 73]; widths x1/4, FC 256, batch norm, no dropout
  (narrow nets train in minutes on 2 cores only this way; see docs/RESULTS.md).
- ``cpu64``: as ``cpu`` at crop 64, S in {73, 110}, jitter [73, 146]: the starting nets of the
  localisation and transfer experiments (``--only A-S73,D-S73,E-S73,D-S110,E-S110``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, grid_arguments, write_section  # noqa: E402

PROFILES = {
    "cpu": dict(
        crop=32,
        s1=37,
        s2=55,
        jitter=(37, 73),
        net=["--width", "0.25", "--fc-dim", "256", "--batch-norm", "--dropout", "0"],
        batch=64,
        lr=0.05,
        epochs=dict(scratch=15, warm=10, finetune=6),
        patience=2,
    ),
    "gpu": dict(
        crop=128,
        s1=146,
        s2=219,
        jitter=(146, 292),
        net=["--width", "1", "--fc-dim", "4096", "--dropout", "0.5"],
        batch=256,
        lr=0.01,
        epochs=dict(scratch=40, warm=25, finetune=12),
        patience=3,
    ),
    # Crop 64 (the paper's x 2/7): pool5 maps of 2x2 and more at the test scales, so dense application
    # gives several locations. The nets that localisation (App. A) and deep features (App. B) start from.
    "cpu64": dict(
        crop=64,
        s1=73,
        s2=110,
        jitter=(73, 146),
        net=["--width", "0.25", "--fc-dim", "256", "--batch-norm", "--dropout", "0"],
        batch=64,
        lr=0.05,
        epochs=dict(scratch=15, warm=10, finetune=6),
        patience=2,
    ),
    # A minute-long run of the whole script on tiny data, to check it end to end.
    "smoke": dict(
        crop=32,
        s1=32,
        s2=40,
        jitter=(32, 48),
        net=["--width", "0.0625", "--fc-dim", "32", "--batch-norm", "--dropout", "0"],
        batch=16,
        lr=0.05,
        epochs=dict(scratch=1, warm=1, finetune=1),
        patience=2,
    ),
}


def plan(p: dict, data: Path) -> list[dict]:
    """Every training run of the grid: name, config, scale, init, table row."""
    s1, s2, (jlo, jhi) = p["s1"], p["s2"], p["jitter"]
    runs = [dict(name=f"A-S{s1}", arch="A", scale=str(s1), init=["--init", "glorot"], kind="scratch")]
    runs.append(
        dict(name=f"A-LRN-S{s1}", arch="A-LRN", scale=str(s1), init=["--init", "glorot"], kind="scratch")
    )
    runs.append(
        dict(name=f"B-5x5-S{s1}", arch="B-5x5", scale=str(s1), init=["--init", "glorot"], kind="scratch")
    )
    for c in "BCDE":
        runs.append(
            dict(
                name=f"{c}-S{s1}",
                arch=c,
                scale=str(s1),
                kind="warm",
                init=[
                    "--init",
                    "glorot",
                    "--init-from",
                    f"{{runs}}/A-S{s1}/best.safetensors",
                    "--init-layers",
                    "paper",
                ],
            )
        )
    for c in "CDE":
        runs.append(
            dict(
                name=f"{c}-S{s2}",
                arch=c,
                scale=str(s2),
                kind="finetune",
                lr_div=10,
                init=["--init-from", f"{{runs}}/{c}-S{s1}/best.safetensors", "--init-layers", "all"],
            )
        )
    for c in "CDE":
        runs.append(
            dict(
                name=f"{c}-S{jlo}-{jhi}",
                arch=c,
                scale=f"{jlo}:{jhi}",
                kind="finetune",
                lr_div=10,
                init=["--init-from", f"{{runs}}/{c}-S{s2}/best.safetensors", "--init-layers", "all"],
            )
        )
    return runs


def run(cmd: list[str], log: Path) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"command failed ({r.returncode}); see {log}")


def main():
    args = grid_arguments(__doc__, PROFILES, str(ROOT.parent / "shared" / "data" / "imagenette-128"))
    p = PROFILES[args.profile]
    data = Path(args.data)
    out = Path(args.out or ROOT / "runs" / f"imagenette-{args.profile}")
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    vg = [sys.executable, "-m", "vggnet"]
    stats = out / "stats.json"
    commands: dict[str, list[str]] = {}
    t0 = time.time()
    if not stats.exists():
        cmd = vg + ["stats", str(data / "train"), "--out", str(stats), "--workers", str(args.workers)]
        run(cmd, log)
    commands["stats"] = vg[2:] + ["stats", str(data / "train"), "--out", str(stats)]
    runs = plan(p, data)
    only = set(args.only.split(",")) if args.only else None
    timings = {}
    for r in runs:
        rd = out / r["name"]
        lr = p["lr"] / r.get("lr_div", 1)
        cmd = vg + [
            "train",
            "--arch",
            r["arch"],
            *p["net"],
            "--crop",
            str(p["crop"]),
            "--scale",
            r["scale"],
            "--data",
            str(data / "train"),
            "--val-data",
            str(data / "val"),
            "--stats",
            str(stats),
            "--batch-size",
            str(p["batch"]),
            "--lr",
            str(lr),
            "--epochs",
            str(p["epochs"][r["kind"]]),
            "--lr-patience",
            str(p["patience"]),
            "--device",
            args.device,
            "--workers",
            str(args.workers),
            "--no-progress",
            "--out",
            str(rd),
            "--recipe",
            f"imagenette {args.profile}: {r['name']}",
            *[a.format(runs=out) for a in r["init"]],
        ]
        commands[f"train {r['name']}"] = cmd[2:]
        if (rd / "final.safetensors").exists() or (only and r["name"] not in only):
            continue
        if rd.exists() and (rd / "last.safetensors").exists():
            cmd = cmd + ["--resume"]
        t = time.time()
        run(cmd, log)
        timings[r["name"]] = time.time() - t
    # Evaluation: single scale (Tables 3) and multi-scale (Table 4) for every net; all protocols
    # for the jittered nets (Table 5); fusion of D and E (Table 6).
    jl, jh = p["jitter"]
    for r in runs:
        ckpt = out / r["name"] / "best.safetensors"
        if not ckpt.exists():
            continue
        protos = ["center", "dense"]
        if r["name"].endswith(f"S{jl}-{jh}") and r["arch"] in "DE":
            protos = ["center", "dense", "multicrop", "dense+multicrop"]
        for tag, extra in (("single", []), ("multi", ["--multi-scale"])):
            ed = out / "eval" / f"{r['name']}-{tag}"
            cmd = vg + [
                "evaluate",
                "--checkpoint",
                str(ckpt),
                "--data",
                str(data / "val"),
                "--protocol",
                *protos,
                *extra,
                "--out",
                str(ed),
                "--device",
                args.device,
                "--workers",
                str(args.workers),
                "--half",
            ]
            commands[f"evaluate {r['name']} {tag}"] = cmd[2:]
            if not (ed / "results.json").exists():
                run(cmd, log)
    fd = out / "eval" / f"fusion-D+E-S{jl}-{jh}-multi"
    members = [str(out / "eval" / f"{c}-S{jl}-{jh}-multi") for c in "DE"]
    if all(Path(m, "results.json").exists() for m in members):
        cmd = vg + ["fuse", *members, "--out", str(fd)]
        commands["fuse D+E"] = cmd[2:]
        if not (fd / "results.json").exists():
            run(cmd, log)
    write_results(Path(args.results), out, p, args.profile, commands, time.time() - t0)
    print(f"wrote {args.results}")


# -- docs/RESULTS.md ------------------------------------------------------------------------------------
def _load(out: Path, name: str) -> dict | None:
    f = out / "eval" / name / "results.json"
    return json.loads(f.read_text()) if f.exists() else None


def _err(res, protocol, which="top1_err"):
    if not res or protocol not in res["protocols"]:
        return None
    return res["protocols"][protocol][which]


def _cell(v):
    return "-" if v is None else f"{v:.1f}"


def write_results(path: Path, out: Path, p: dict, profile: str, commands: dict, seconds: float) -> None:
    s1, s2, (jl, jh) = p["s1"], p["s2"], p["jitter"]
    names = [r["name"] for r in plan(p, Path("."))]
    L = [f"# Results on Imagenette ({profile} profile)", ""]
    notes = ROOT / "experiments" / f"imagenette-{profile}-notes.md"
    first = next((r for r in (_load(out, f"{n}-single") for n in names) if r), None)
    n_val = first["images"] if first else "?"
    L += [
        f"Generated by `python experiments/imagenette.py --profile {profile}` from the runs in "
        f"`{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}`; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, no GPU. Data: `{_rel(first['data']) if first else '?'}`. Scales are the "
        "paper's times "
        f"{p['crop']}/224: crop {p['crop']}, S in {{{s1}, {s2}}}, jitter [{jl}; {jh}]. The **Run** column "
        "names the "
        f"commands in the last section. Errors are top-1 / top-5 in %, on all {n_val} validation images.",
        "",
    ]
    if notes.exists():
        L += [notes.read_text().strip(), ""]

    def scale_table(tag: str, title: str, with_center: bool) -> list[str]:
        """Tables 3 and 4: one row per net, dense errors (and the centre crop for reference)."""
        extra = " centre-crop top-1 |" if with_center else ""
        rows = [
            title,
            "",
            f"| Config | train S | test Q | dense top-1 | dense top-5 |{extra} Run |",
            "|---|---|---|---|---|" + ("---|" if with_center else "") + "---|",
        ]
        for n in names:
            r = _load(out, f"{n}-{tag}")
            if r:
                center = f" {_cell(_err(r, 'center'))} |" if with_center else ""
                rows.append(
                    f"| {r['arch']} | {_fmt_s(r['train_scale'])} | {','.join(map(str, r['scales']))} | "
                    f"{_cell(_err(r, 'dense'))} | {_cell(_err(r, 'dense', 'top5_err'))} |{center} {n} |"
                )
        return rows

    L += scale_table("single", "## Table 3 analogue: single test scale (§4.1)", True)
    L += [""] + scale_table("multi", "## Table 4 analogue: three test scales (§4.2)", False)
    L += [
        "",
        f"## Table 5 analogue: dense vs multi-crop, S in [{jl};{jh}], three test scales (§4.3)",
        "",
        "| Config | protocol | top-1 | top-5 | Run |",
        "|---|---|---|---|---|",
    ]
    for c in "DE":
        r = _load(out, f"{c}-S{jl}-{jh}-multi")
        if r:
            for proto in ("dense", "multicrop", "dense+multicrop"):
                L.append(
                    f"| {c} | {proto} | {_cell(_err(r, proto))} | {_cell(_err(r, proto, 'top5_err'))} | "
                    f"{c}-S{jl}-{jh} |"
                )
    fus = _load(out, f"fusion-D+E-S{jl}-{jh}-multi")
    L += [
        "",
        "## Table 6 analogue: fusion of D and E (§4.4)",
        "",
        "| Nets | protocol | top-1 | top-5 | Run |",
        "|---|---|---|---|---|",
    ]
    if fus:
        for proto, v in fus["protocols"].items():
            L.append(f"| D + E | {proto} | {v['top1_err']:.1f} | {v['top5_err']:.1f} | fuse D+E |")
    L += ["", "## The paper's findings, one by one", "", *findings(out, p), ""]
    train_s = sum(
        json.loads(line)["epoch_seconds"]
        for n in names
        if (out / n / "log.jsonl").exists()
        for line in (out / n / "log.jsonl").read_text().splitlines()
        if line.strip()
    )
    L += [
        "## Commands",
        "",
        f"Run from the repository root, in this order (training epochs took {train_s / 60:.0f} min "
        f"in total on this machine, validation and evaluation not included).",
        "",
    ]
    for k, cmd in commands.items():
        L.append(f"- **{k}**: `vggnet {' '.join(shlex.quote(_rel(c)) for c in cmd[1:])}`")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_section(path, f"imagenette-{profile}", "\n".join(L))


def _rel(arg) -> str:
    """A path as seen from the repository root."""
    return str(arg).replace(str(ROOT) + "/", "").replace(str(ROOT.parent) + "/", "../")


def _fmt_s(scale):
    lo, hi = scale
    return str(lo) if lo == hi else f"[{lo};{hi}]"


def verdict_line(title, paper, better, worse, label_b, label_w, images=None) -> str:
    """One finding's line. `better` should have the lower error. With `images`, a finding of no
    effect (`worse` is the variant said not to help): shown unless the variant wins by more than
    twice the standard error of a difference of two error rates on that many images."""
    if better is None or worse is None:
        return f"- **{title}** (paper: {paper}): not measured yet."
    margin = worse - better
    noise = 2 * math.sqrt((better * (100 - better) + worse * (100 - worse)) / images) if images else 0
    shown = "shown" if margin > -noise else "not shown"
    band = f"; a gain counts beyond {noise:.1f} points, 2 standard errors on {images} images"
    return (
        f"- **{title}** (paper: {paper}): **{shown}** here: {label_b} {better:.1f}% vs {label_w} "
        f"{worse:.1f}% top-1 ({margin:+.1f} points{band if images else ''})."
    )


def findings(out: Path, p: dict) -> list[str]:
    s1, s2, (jl, jh) = p["s1"], p["s2"], p["jitter"]

    def g(n, proto="dense", tag="single"):
        return _err(_load(out, f"{n}-{tag}"), proto)

    rows = []

    def verdict(*args, **kw):
        rows.append(verdict_line(*args, **kw))

    a = _load(out, f"A-S{s1}-single")
    lrn = (g(f"A-S{s1}"), g(f"A-LRN-S{s1}"), "A", "A-LRN")
    verdict("LRN does not help", "A-LRN 29.7 vs A 29.6", *lrn, images=a["images"] if a else None)
    depth = [(c, g(f"{c}-S{s1}")) for c in "ABDE"]
    if all(v is not None for _, v in depth):
        seq = ", ".join(f"{c} {v:.1f}%" for c, v in depth)
        mono = all(depth[i][1] >= depth[i + 1][1] for i in range(2))
        rows.append(
            f"- **Error falls with depth A→E, saturating at 19 layers** (paper: 29.6, 28.7, 27.0, 27.3): "
            f"{seq} (dense, S={s1}); falling A→B→D: **{'shown' if mono else 'not shown'}**; "
            f"E vs D: {depth[3][1] - depth[2][1]:+.1f} points."
        )
    else:
        have = ", ".join(f"{c} {v:.1f}%" for c, v in depth if v is not None) or "none"
        rows.append(
            "- **Error falls with depth A→E, saturating at 19 layers** (paper: 29.6, 28.7, 27.0, 27.3): "
            f"not measured yet (so far, dense at S={s1}: {have})."
        )
    verdict(
        "C (1x1) is worse than D (3x3) at the same depth",
        "28.1 vs 27.0",
        g(f"D-S{s1}"),
        g(f"C-S{s1}"),
        "D",
        "C",
    )
    verdict(
        "The 5x5 shallow net is worse than B (centre crop)",
        "about +7 points",
        g(f"B-S{s1}", "center"),
        g(f"B-5x5-S{s1}", "center"),
        "B",
        "B-5x5",
    )
    for c in "DE":
        fixed = [v for v in (g(f"{c}-S{s1}"), g(f"{c}-S{s2}")) if v is not None]
        verdict(
            f"Scale jittering beats fixed S ({c})",
            "D 25.6 vs 26.8" if c == "D" else "E 25.5 vs 26.9",
            g(f"{c}-S{jl}-{jh}"),
            min(fixed) if fixed else None,
            f"[{jl};{jh}]",
            "best fixed S",
        )
    for c in "DE":
        verdict(
            f"Multi-scale testing beats a single scale ({c}, jittered)",
            "24.8 vs 25.6" if c == "D" else "24.8 vs 25.5",
            g(f"{c}-S{jl}-{jh}", tag="multi"),
            g(f"{c}-S{jl}-{jh}"),
            "3 scales",
            "1 scale",
        )
    for c in "DE":
        verdict(
            f"Multi-crop slightly beats dense ({c})",
            "24.6 vs 24.8",
            g(f"{c}-S{jl}-{jh}", "multicrop", "multi"),
            g(f"{c}-S{jl}-{jh}", "dense", "multi"),
            "multi-crop",
            "dense",
        )
        both = g(f"{c}-S{jl}-{jh}", "dense+multicrop", "multi")
        best = [
            v
            for v in (g(f"{c}-S{jl}-{jh}", "multicrop", "multi"), g(f"{c}-S{jl}-{jh}", "dense", "multi"))
            if v is not None
        ]
        verdict(
            f"Dense + multi-crop beats either ({c})",
            "24.4 vs 24.6",
            both,
            min(best) if best else None,
            "combined",
            "best single protocol",
        )
    fus = _load(out, f"fusion-D+E-S{jl}-{jh}-multi")
    if fus:
        for proto in ("dense", "dense+multicrop"):
            singles = [g(f"{c}-S{jl}-{jh}", proto, "multi") for c in "DE"]
            singles = [v for v in singles if v is not None]
            verdict(
                f"Fusing D and E beats the best single net ({proto})",
                "24.0 vs 24.8 (dense)",
                fus["protocols"].get(proto, {}).get("top1_err"),
                min(singles) if singles else None,
                "D+E",
                "best of D, E",
            )
    return rows


if __name__ == "__main__":
    main()
