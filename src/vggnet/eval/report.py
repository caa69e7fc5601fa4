"""``vggnet report``: evaluation folders -> a table in the layout of the paper's Tables 3-6
(config, train S, test Q, protocol, top-1 and top-5 error), as Markdown and CSV."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import VGGError
from .runner import RESULTS

COLUMNS = ["config", "train S", "test Q", "protocol", "top-1 err (%)", "top-5 err (%)", "images"]


def _s(scale) -> str:
    if not scale:
        return "-"
    lo, hi = scale
    return str(lo) if lo == hi else f"[{lo};{hi}]"


def collect_rows(dirs, per_scale: bool = False) -> list[dict]:
    rows = []
    for d in dirs:
        path = Path(d) / RESULTS
        if not path.is_file():
            raise VGGError(f"no evaluation results in {d} (expected {path})")
        r = json.loads(path.read_text())
        config = r.get("arch") or "?"
        for protocol, v in r["protocols"].items():
            scales = r.get("scales") or []
            rows.append({"config": config, "train S": _s(r.get("train_scale")),
                         "test Q": ",".join(map(str, scales)) or "-", "protocol": protocol,
                         "top-1 err (%)": f"{v['top1_err']:.1f}", "top-5 err (%)": f"{v['top5_err']:.1f}",
                         "images": r.get("images", "")})
            if per_scale and len(scales) > 1:
                for q, e in v.get("per_scale", {}).items():
                    rows.append({**rows[-1], "test Q": q, "top-1 err (%)": f"{e['top1_err']:.1f}",
                                 "top-5 err (%)": f"{e['top5_err']:.1f}"})
    return rows


def markdown(rows, title: str | None = None) -> str:
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
