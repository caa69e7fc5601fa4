"""``vggnet report``: evaluation folders -> a table in the layout of the paper's Tables 3-6
(config, train S, test Q, protocol, top-1 and top-5 error), as Markdown and CSV. Each row names the
folder it came from (``run``): two runs of one setting are two rows that can be told apart."""

from __future__ import annotations

from ..data.transforms import Scale
from ..tables import columns, error_columns, render
from .posteriors import read_results

COLUMNS = columns(
    "run",
    "config",
    "train S",
    "test Q",
    "protocol",
    *error_columns(),
    "images",
)


def collect_rows(dirs, per_scale: bool = False) -> list[dict]:
    rows = []
    for d in dirs:
        r = read_results(d)
        train = Scale(*r["train_scale"]).paper() if r.get("train_scale") else "-"
        for protocol, v in r["protocols"].items():
            scales = r.get("scales") or []
            rows.append(
                {
                    "run": str(d),
                    "config": r.get("arch") or "?",
                    "train S": train,
                    "test Q": ",".join(map(str, scales)) or "-",
                    "protocol": protocol,
                    "top1_err": v["top1_err"],
                    "top5_err": v["top5_err"],
                    "images": r.get("images", ""),
                }
            )
            if per_scale and len(scales) > 1:
                for q, e in v.get("per_scale", {}).items():
                    rows.append(
                        {**rows[-1], "test Q": q, "top1_err": e["top1_err"], "top5_err": e["top5_err"]}
                    )
    return rows


def markdown(rows, title: str | None = None) -> str:
    return render(rows, COLUMNS, "markdown", title)


def to_csv(rows) -> str:
    return render(rows, COLUMNS, "csv")
