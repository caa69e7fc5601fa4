"""Tables 8 and 9 of Appendix A from saved localisation results (``vggnet loc evaluate`` /
``vggnet loc merge`` folders), each with the two baselines that need no localisation net. Given
results that name their folder (``run``, as ``vggnet report`` passes them), each row names it, and
each baseline row names the box data it was measured on: results of several data sets can share a
table without their baselines being mistaken for one another."""

from __future__ import annotations

from ..tables import Column, columns, error_columns, render

TABLE8 = columns("net", "head", "fine-tuned", "train S", "test Q", ("loc err (%)", "err", "{:.1f}"), "images")
TABLE9 = columns(
    "net",
    "train S",
    "test Q",
    "method",
    *error_columns("loc err (%)", ("top1", "top5")),
    "images",
)


def _s(scale) -> str:
    if not scale:
        return "-"
    lo, hi = scale
    return str(lo) if lo == hi else f"[{lo};{hi}]"


def _net(r: dict) -> str:
    if r.get("fused_from"):
        return " + ".join(_net(m) for m in r.get("members") or []) or "fusion"
    return f"{r.get('arch', '?')} {str(r.get('head', '')).upper()}"


def table8_rows(results: list[dict]) -> list[dict]:
    """Protocol 1: the ground-truth class's box from the centre crop (classification excluded)."""
    rows, baselines = [], {}
    for r in results:
        c = r.get("center")
        if not c:
            continue
        rows.append(
            {
                "net": r.get("arch", "?"),
                "head": str(r.get("head", "")).upper(),
                "fine-tuned": {"fc": "fc6-fc8", "all": "all layers"}.get(r.get("finetune"), "?"),
                "train S": _s(r.get("train_scale")),
                "test Q": r.get("center_q", "-"),
                "err": c["gt_class_err"],
                "images": r.get("images"),
                "run": r.get("run"),
            }
        )
        for key, name in (
            ("whole_image_gt_class_err", "baseline: whole image"),
            ("mean_box_gt_class_err", "baseline: mean training box, centred"),
        ):
            if key in c:
                baselines.setdefault((r.get("data"), name), (c[key], r.get("images")))
    for (data, name), (err, n) in baselines.items():
        rows.append(
            {
                "net": name,
                "head": "-",
                "fine-tuned": "-",
                "train S": "-",
                "test Q": "-",
                "err": err,
                "images": n,
                "run": _data_label(data),
            }
        )
    return rows


def table9_rows(results: list[dict]) -> list[dict]:
    """Protocol 2 (top-k classes from a classifier): dense + merge, the centre crop alone, and
    the baselines with the same class guesses."""
    rows, baselines = [], {}
    for r in results:
        d = r.get("dense")
        if not d:
            continue
        k = r.get("top_k", 5)
        base = {
            "net": _net(r),
            "train S": _s(r.get("train_scale"))
            if not r.get("fused_from")
            else " + ".join(_s(m.get("train_scale")) for m in r.get("members") or []),
            "test Q": ",".join(map(str, r.get("scales") or [])),
            "images": r.get("images"),
            "run": r.get("run"),
        }
        rows.append(
            dict(
                base,
                method=f"dense + merge (t={d['threshold']:g})",
                top1=d["top1_loc_err"],
                top5=d[f"top{k}_loc_err"],
            )
        )
        if r.get("center_topk"):
            rows.append(
                dict(
                    base,
                    **{"test Q": r.get("center_q", "-")},
                    method="centre crop",
                    top1=r["center_topk"]["top1_loc_err"],
                    top5=r["center_topk"][f"top{k}_loc_err"],
                )
            )
        for name, e in (r.get("baselines") or {}).items():
            baselines.setdefault((r.get("data"), name), (e, r.get("images"), k))
        if r.get("classification"):
            baselines.setdefault(
                (r.get("data"), "classification alone (any box)"),
                (
                    {
                        "top1_loc_err": r["classification"]["top1_err"],
                        f"top{k}_loc_err": r["classification"][f"top{k}_err"],
                    },
                    r.get("images"),
                    k,
                ),
            )
    for (data, name), (e, n, k) in baselines.items():
        rows.append(
            {
                "net": "baseline",
                "train S": "-",
                "test Q": "-",
                "method": name,
                "top1": e["top1_loc_err"],
                "top5": e[f"top{k}_loc_err"],
                "images": n,
                "run": _data_label(data),
            }
        )
    return rows


def _data_label(data) -> str:
    """A baseline's row names the data it was measured on (it needs no net, only the boxes)."""
    return f"data: {data}" if data else "-"


def loc_tables(results: list[dict], style: str = "markdown") -> str:
    parts = []
    t8, t9 = table8_rows(results), table9_rows(results)
    run = [Column("run")] if any(r.get("run") for r in results) else []
    if t8:
        parts.append(
            render(
                t8, run + TABLE8, style, "Table 8 layout: localisation error, ground-truth class, centre crop"
            )
        )
    if t9:
        parts.append(
            render(
                t9,
                run + TABLE9,
                style,
                "Table 9 layout: localisation error, predicted classes (top-1 / top-5)",
            )
        )
    return "\n".join(parts)
