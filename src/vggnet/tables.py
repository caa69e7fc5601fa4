"""One formatter for every results table the project prints or writes: aligned text for a
terminal, Markdown for reports and docs, CSV for spreadsheets. A table is a list of row dicts and
a list of :class:`Column` (header, the row's key, a format)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    header: str
    key: str = ""
    fmt: str = "{}"  # applied to numbers; other values are shown as they are

    def cell(self, row: dict) -> str:
        value = row.get(self.key or self.header, "")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self.fmt.format(value)
        return "" if value is None else str(value)


def columns(*specs) -> list[Column]:
    """``columns(("top-1 err (%)", "top1_err", "{:.1f}"), "images")``: tuples, plain headers or columns."""
    return [
        spec if isinstance(spec, Column) else Column(*spec) if isinstance(spec, tuple) else Column(spec)
        for spec in specs
    ]


def error_columns(label: str = "err (%)", keys=("top1_err", "top5_err"), fmt: str = "{:.1f}") -> list[Column]:
    """The paper's pair of figures as two columns: top-1 and top-5 `label` (§4: error rates)."""
    return [Column(f"top-{k} {label}", key, fmt) for k, key in zip((1, 5), keys)]


def render(rows: list[dict], cols: list[Column], style: str = "text", title: str | None = None) -> str:
    cells = [[c.cell(r) for c in cols] for r in rows]
    headers = [c.header for c in cols]
    if style == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(cells)
        return buf.getvalue()
    if style == "markdown":
        lines = [f"### {title}", ""] if title else []
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "---|" * len(headers))
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    widths = [
        max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    numeric = [all(_is_number(row[i]) for row in cells) and cells for i in range(len(headers))]

    def line(values):
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    lines = [title] if title else []
    return "\n".join(lines + [line(headers)] + [line(row) for row in cells])


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%").replace(",", ""))
        return True
    except ValueError:
        return text in ("", "-")
