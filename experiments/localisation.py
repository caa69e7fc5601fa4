"""Appendix A on Imagenette's real boxes: Table 8 and Table 9 analogues -> docs/RESULTS.md.

    python experiments/localisation.py [--data ../shared/data/imagenette-128] [--cls runs/imagenette-cpu64]

Starts from the crop-64 classification nets of ``experiments/imagenette.py --profile cpu64``
(D at S = 73 and S = 110, the paper's 256 and 384 times 64/224). The 700 boxed training images are
divided once, by image: 80% to train the localisation nets, 20% held out; the held-out images are
halved again: one half ("tune") chooses the greedy-merge threshold, the other ("report") gives the
Table 9 figures. Table 8 (protocol 1) uses all held-out images. Every step is a vggnet command
(listed in the generated section); finished steps are skipped, so the script resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, VGGNET, rel, run, shown, write_section  # noqa: E402

NET = ["--arch", "D", "--width", "0.25", "--fc-dim", "256", "--batch-norm", "--dropout", "0", "--crop", "64"]
LOC_NETS = {  # name: (head, fine-tuned layers, S) -- Table 8's three rows at the "384" scale, and S=256's PCR
    "SCR-fc-S110": ("scr", "fc", 110),
    "PCR-fc-S110": ("pcr", "fc", 110),
    "PCR-all-S110": ("pcr", "all", 110),
    "PCR-all-S73": ("pcr", "all", 73),
}
DENSE_SCALES = {"S110": ["110", "110,146"], "S73": ["73", "73,110"]}


def divide(data: Path, out: Path) -> dict:
    """The fixed division of the boxed images (files written once, reused by every later run)."""
    from vggnet.localization import read_box_csv, split_by_image, write_box_csv

    files = {k: out / f"boxes-{k}.csv" for k in ("train", "val", "tune", "report")}
    if not all(f.exists() for f in files.values()):
        boxes = read_box_csv(data / "boxes-train.csv")
        train, val = split_by_image(boxes, 0.2, seed=0)
        tune, report = split_by_image(val, 0.5, seed=1)
        for k, part in (("train", train), ("val", val), ("tune", tune), ("report", report)):
            write_box_csv(part, files[k], force=True)
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imagenette-128"))
    ap.add_argument("--cls", default=str(ROOT / "runs" / "imagenette-cpu64"), help="the classification runs")
    ap.add_argument("--out", default=str(ROOT / "runs" / "imagenette-loc"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"))
    args = ap.parse_args()
    data, cls, out = Path(args.data), Path(args.cls), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log, files, cmds = out / "commands.log", divide(data, out), {}
    classifier = cls / "D-S110" / "best.safetensors"
    for name, (head, finetune, s) in LOC_NETS.items():
        rd = out / name
        cmd = VGGNET + [
            "loc",
            "train",
            *NET,
            "--head",
            head,
            "--finetune",
            finetune,
            "--scale",
            str(s),
            "--data",
            files["train"],
            "--data-root",
            data,
            "--val-data",
            files["val"],
            "--init-from",
            cls / f"D-S{s}" / "best.safetensors",
            "--batch-size",
            "32",
            "--lr",
            "0.005",
            "--epochs",
            str(args.epochs),
            "--lr-patience",
            "3",
            "--workers",
            str(args.workers),
            "--no-progress",
            "--out",
            rd,
            "--recipe",
            f"imagenette loc: {name}",
        ]
        cmds[f"train {name}"] = cmd
        run(cmd + (["--resume"] if (rd / "last.safetensors").exists() else []), log, rd / "final.safetensors")
        ev = out / "eval" / f"{name}-p1"
        cmd = VGGNET + [
            "loc",
            "evaluate",
            "--checkpoint",
            rd / "best.safetensors",
            "--data",
            files["val"],
            "--root",
            data,
            "--protocol",
            "center",
            "--workers",
            str(args.workers),
            "--out",
            ev,
        ]
        cmds[f"protocol 1 {name}"] = cmd
        run(cmd, log, ev / "results.json")
    for name in ("PCR-all-S73", "PCR-all-S110"):
        for qs in DENSE_SCALES[name.split("-")[-1]]:
            for part in ("tune", "report"):
                ev = out / "eval" / f"{name}-Q{qs.replace(',', '+')}-{part}"
                cmd = VGGNET + [
                    "loc",
                    "evaluate",
                    "--checkpoint",
                    out / name / "best.safetensors",
                    "--data",
                    files[part],
                    "--root",
                    data,
                    "--scales",
                    qs,
                    "--classifier",
                    classifier,
                    "--workers",
                    str(args.workers),
                    "--out",
                    ev,
                ]
                cmds[f"protocol 2 {name} Q={qs} ({part})"] = cmd
                run(cmd, log, ev / "results.json")
    rows = []
    sets = {
        (n, q): [f"{n}-Q{q.replace(',', '+')}"]
        for n in ("PCR-all-S73", "PCR-all-S110")
        for q in DENSE_SCALES[n.split("-")[-1]]
    }
    sets[("fusion of S73 and S110", "73,110 + 110,146")] = ["PCR-all-S73-Q73+110", "PCR-all-S110-Q110+146"]
    for (net, qs), members in sets.items():
        label = f"{net} Q={qs}"
        tuned = out / "merge" / f"{'fusion' if len(members) > 1 else members[0]}-tune"
        cmd = VGGNET + [
            "loc",
            "merge",
            *[out / "eval" / f"{m}-tune" for m in members],
            "--data",
            files["tune"],
            "--root",
            data,
            "--tune",
            "--out",
            tuned,
        ]
        cmds[f"choose t: {label}"] = cmd
        run(cmd, log, tuned / "results.json")
        t = json.loads((tuned / "results.json").read_text())["dense"]["threshold"]
        final = tuned.with_name(tuned.name.replace("-tune", "-report"))
        cmd = VGGNET + [
            "loc",
            "merge",
            *[out / "eval" / f"{m}-report" for m in members],
            "--data",
            files["report"],
            "--root",
            data,
            "--threshold",
            str(t),
            "--out",
            final,
        ]
        cmds[f"report: {label}"] = cmd
        run(cmd, log, final / "results.json")
        rows.append((net, qs, t, final, [out / "eval" / f"{m}-report" for m in members]))
    picture = ROOT / "docs" / "images" / "localisation-gallery.png"
    if not picture.exists():
        from vggnet.localization.evaluate import draw_gallery, load_predictions
        from vggnet.localization.objective import open_boxes

        pred = load_predictions(out / "eval" / "PCR-all-S110-Q110-report")
        source = open_boxes(files["report"], data, pred["classes"])
        t = json.loads((out / "merge" / "PCR-all-S110-Q110-tune" / "results.json").read_text())["dense"][
            "threshold"
        ]
        draw_gallery(pred, source, t, picture, 16)
    write_section(Path(args.results), "localisation", report(out, files, rows, cmds))
    print(f"wrote {args.results}")


def _load(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def findings(out: Path, rows: list, t8: list) -> list[str]:
    err = {f"{r['head']}-{r['finetune']}-S{r['train_scale'][0]}": r["center"]["gt_class_err"] for r in t8}
    base = t8[0]["center"]
    dense = {(net, qs): _load(final)["dense"]["top5_loc_err"] for net, qs, _, final, _ in rows}
    crop = {
        net: _load(m[0])["center_topk"]["top5_loc_err"]
        for net, qs, _, _, m in rows
        if len(m) == 1 and _load(m[0]).get("center_topk")
    }
    out_rows = []

    def verdict(title, paper, better, worse, what_b, what_w):
        out_rows.append(
            f"- **{title}** (paper: {paper}): **{'shown' if better < worse else 'not shown'}**: "
            f"{what_b} {better:.1f}% vs {what_w} {worse:.1f}% ({better - worse:+.1f})."
        )

    verdict(
        "PCR beats SCR (fc layers fine-tuned, protocol 1)",
        "34.3 vs 36.4",
        err["pcr-fc-S110"],
        err["scr-fc-S110"],
        "PCR",
        "SCR",
    )
    verdict(
        "Fine-tuning all layers beats fc-only (PCR, protocol 1)",
        "33.1 vs 34.3",
        err["pcr-all-S110"],
        err["pcr-fc-S110"],
        "all layers",
        "fc6-fc8",
    )
    verdict(
        "A localisation net beats the whole image as the box (protocol 1)",
        "not in the paper: a baseline",
        min(err.values()),
        base["whole_image_gt_class_err"],
        "best net",
        "whole image",
    )
    verdict(
        "A localisation net beats the mean training box, centred (protocol 1)",
        "not in the paper: a baseline",
        min(err.values()),
        base["mean_box_gt_class_err"],
        "best net",
        "mean box",
    )
    verdict(
        "Dense application beats the centre crop, top-5 (protocol 2, S = 110)",
        "by far",
        dense[("PCR-all-S110", "110")],
        crop["PCR-all-S110"],
        "dense + merge",
        "centre crop",
    )
    verdict(
        "Several test scales beat one (S = 110)",
        "27.5 vs 28.2",
        dense[("PCR-all-S110", "110,146")],
        dense[("PCR-all-S110", "110")],
        "Q = 110,146",
        "Q = 110",
    )
    verdict(
        "Fusing the S = 73 and S = 110 nets helps",
        "26.9 vs 27.5",
        dense[("fusion of S73 and S110", "73,110 + 110,146")],
        min(dense[("PCR-all-S110", "110,146")], dense[("PCR-all-S73", "73,110")]),
        "fusion",
        "best member",
    )
    out_rows += [
        "",
        "Why the dense protocol does not pay here: at Q = 110 a crop-64 net has 2 x 2 output locations "
        "(3 x 3 at Q = 146), windows at the image corners that each see part of the object; a "
        "quarter-width net trained on 560 images does not learn to extrapolate the whole box from a "
        "part (the raw boxes of corner windows lean towards their window, see the gallery "
        "`runs/imagenette-loc/eval/*-report/gallery.png`), so averaging them with the better-placed "
        "windows' boxes costs IoU: the threshold chosen on the `tune` half is mostly the lowest of the grid "
        "(little merging; the errors at every t are in the tune folders' results.json, and vary by several "
        "points between neighbouring t on 67 images). In the fusion, the S = 73 net's boxes, scored by the "
        "same classifier, often win the ranking though they are worse. In the paper each image gives tens "
        "of locations per scale at Q = 384 and the regressor is "
        "trained on 1.2 M images. Protocol 1's ordering (PCR over SCR, all layers over fc-only, every "
        "net over both baselines) is the paper's.",
    ]
    return out_rows


def report(out: Path, files: dict, rows: list, cmds: dict) -> str:
    from vggnet.localization.report import loc_tables

    t8 = [_load(out / "eval" / f"{n}-p1") for n in LOC_NETS]
    n_val = t8[0]["images"]
    L = [
        "# Localisation on Imagenette (Appendix A, CPU-sized)",
        "",
        f"Generated by `python experiments/localisation.py`. Data: the {n_val * 5} Imagenette training "
        "images "
        f"with real ImageNet boxes (`../shared/data/imagenette-128/boxes-train.csv`), divided by image: "
        f"{n_val * 4} to train the box regressors, {n_val} held out (`{rel(files['val'])}`); those are "
        "halved into "
        "`tune` (chooses the merging threshold t) and `report` (Table 9). Nets: D at a quarter of the "
        "paper's "
        "widths, crop 64, batch norm (the classification nets of the `cpu64` profile), the box layer "
        "replacing "
        f"fc8, trained from the classification net of the same scale (S = 73 or 110: the paper's 256 and 384 "
        "times 64/224) with the Euclidean loss at lr 0.005 (the classifier's / 10). Errors in %; a box is "
        "right "
        "at IoU >= 0.5. **Caveat:** the classification net saw these images as training images "
        "(Imagenette's "
        "boxes are on training images), so its class guesses here are optimistic; protocol 1 (Table 8) "
        "excludes "
        f"classification and is unaffected.",
        "",
        "## Table 8 analogue: protocol 1 (ground-truth class, centre crop at Q = S)",
        "",
        loc_tables(t8, "markdown").split("### Table 9")[0].split("\n", 2)[2].strip(),
        "",
    ]
    L += [
        "## Table 9 analogue: protocol 2 (dense over the whole image at the row's Q, greedy merge; the top-5 "
        "classes and the locations' scores from the classification net D, S = 110, run densely at the same "
        "Q)",
        "",
        f"{_load(Path(rows[0][3]))['images']} `report` images; t chosen on the `tune` images "
        f"(the merge grid and its errors are in `runs/imagenette-loc/merge/*-tune/results.json`).",
        "",
        "![protocol 2, PCR-all-S110 at Q = 110: ground truth and the top-1 "
        "guess](images/localisation-gallery.png)",
        "",
        "| net | test Q | method | top-1 loc err | top-5 loc err | t |",
        "|---|---|---|---|---|---|",
    ]
    crops = {}
    for net, qs, t, final, members in rows:
        r = _load(final)
        L.append(
            f"| {net} | {qs} | dense + merge | {r['dense']['top1_loc_err']:.1f} | "
            f"{r['dense']['top5_loc_err']:.1f} | {t:g} |"
        )
        if len(members) == 1 and _load(members[0]).get("center_topk"):
            crops.setdefault(net, _load(members[0]))
    for net, m in crops.items():  # the centre crop alone, with the same class guesses
        L.append(
            f"| {net} | {m['center_q']} | centre crop | {m['center_topk']['top1_loc_err']:.1f} | "
            f"{m['center_topk']['top5_loc_err']:.1f} | - |"
        )
    base = _load(rows[0][4][0])
    for name, e in base["baselines"].items():
        L.append(f"| baseline | - | {name} | {e['top1_loc_err']:.1f} | {e['top5_loc_err']:.1f} | - |")
    c = base["classification"]
    L.append(f"| classification alone | - | any box | {c['top1_err']:.1f} | {c['top5_err']:.1f} | - |")
    L += ["", "## The paper's findings, one by one", "", *findings(out, rows, t8), ""]
    L += ["## Commands", "", "Run from the repository root, in this order:", ""]
    L += [f"- **{k}**: `{shown(v)}`" for k, v in cmds.items()]
    return "\n".join(L)


if __name__ == "__main__":
    main()
