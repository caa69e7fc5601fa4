"""Table 11 of the paper from saved transfer results: one row per net / descriptor setting, one
column per data set; VOC-style cells are mean AP (the AP definition is named in the header),
Caltech-style cells are mean class recall, mean ± std over the splits. All in percent."""

from __future__ import annotations

from pathlib import Path

from ..tables import columns, render
from .protocols import load_results


def _cell(result: dict, ap_kind: str) -> str:
    if result["kind"] == "multi":
        m = result["metrics"][ap_kind]
        text = f"{m['mean']:.1f}" if m["mean"] is not None else "n/a"
        total = len(result["classes"])
        return text if m["classes_scored"] == total else f"{text} ({m['classes_scored']}/{total} classes)"
    s = result["summary"]
    return f"{s['mean']:.1f} ± {s['std']:.1f}" if s["splits"] > 1 else f"{s['mean']:.1f}"


def _header(dataset: str, result: dict, ap_kind: str) -> str:
    if result["kind"] == "multi":
        return f"{dataset} (mAP, {ap_kind})"
    return f"{dataset} (mean class recall, {result['summary']['splits']} splits)"


def table11(
    results, ap_kind: str = "VOC07 11-point", title: str | None = None, style: str = "markdown"
) -> str:
    """Table 11 from result dicts (or paths to them). Rows and columns keep first-seen order; a
    setting not run on a data set shows "-"."""
    results = [load_results(r) if not isinstance(r, dict) else r for r in results]
    rows: dict[str, dict] = {}
    headers: dict[str, str] = {}
    for n, r in enumerate(results):
        header = headers.setdefault(r["dataset"], _header(r["dataset"], r, ap_kind))
        label = r["setting"]
        if header in rows.get(label, {}):  # two results for one cell: named by their nets' run folders
            where = ", ".join(Path(str(net.get("checkpoint") or "?")).parent.name or "?" for net in r["nets"])
            label = f"{label} ({where})"
            if header in rows.get(label, {}):
                label = f"{label} #{n + 1}"
        rows.setdefault(label, {"net / descriptor": label})[header] = _cell(r, ap_kind)
    cols = columns("net / descriptor", *headers.values())
    return render(
        [{h: row.get(h, "-") for h in ["net / descriptor", *headers.values()]} for row in rows.values()],
        cols,
        style,
        title,
    )
