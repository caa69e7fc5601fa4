"""ConvNet fusion (§4.4, Table 6) from saved posteriors: the soft-max posteriors of several
evaluation runs are averaged per image, without running any network. Runs over different image
sets, labels or class lists are refused."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import VGGError
from ..tables import columns, error_columns, render
from .metrics import topk_errors
from .posteriors import load_posteriors, save_posteriors, save_results


def fuse(run_dirs, protocol: str | None = None) -> dict:
    """Average the posteriors of `run_dirs`, per protocol they all share (or just `protocol`)."""
    if len(run_dirs) < 1:
        raise VGGError("fuse needs at least one evaluation folder")
    seen = {}
    for i, d in enumerate(run_dirs):  # a net fused with itself is that net, not an ensemble (§4.4)
        first = seen.setdefault(Path(d).resolve(), i)
        if first != i:
            raise VGGError(
                f"cannot fuse {run_dirs[first]} with {d}: they are the same folder; "
                f"give each evaluation folder once"
            )
    runs = [load_posteriors(d) for d in run_dirs]
    first = runs[0]
    for r in runs[1:]:
        if r["ids"] != first["ids"]:
            raise VGGError(
                f"cannot fuse {r['dir']} with {first['dir']}: they were evaluated on different images "
                f"({len(r['ids'])} vs {len(first['ids'])} images, or another order)"
            )
        if r["classes"] != first["classes"] or not torch.equal(r["labels"], first["labels"]):
            raise VGGError(f"cannot fuse {r['dir']} with {first['dir']}: different classes or labels")
    shared = [p for p in first["protocols"] if all(p in r["protocols"] for r in runs)]
    if protocol is not None:
        if protocol not in shared:
            raise VGGError(
                f"protocol {protocol!r} is not in every run; shared: {', '.join(shared) or 'none'}"
            )
        shared = [protocol]
    if not shared:
        raise VGGError("the runs share no protocol")
    rows, fused = {}, {}
    for p in shared:
        fused[p] = torch.stack([r["probs"][p] for r in runs]).mean(0)
        rows[p] = topk_errors(fused[p], first["labels"])
        rows[p]["members"] = [topk_errors(r["probs"][p], first["labels"]) for r in runs]
    return dict(
        runs=[r["dir"] for r in runs],
        archs=[r["results"].get("arch") for r in runs],
        root=first.get("root"),
        images=len(first["ids"]),
        protocols=rows,
        fused=fused,
        labels=first["labels"],
        ids=first["ids"],
        classes=first["classes"],
    )


def save_fusion(out, result: dict) -> None:
    """Write the fused posteriors like an evaluation folder, so fusions can be reported or fused again."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_posteriors(
        out,
        result["ids"],
        result["classes"],
        result["labels"],
        result["fused"],
        scales=[],
        protocols=list(result["fused"]),
        root=result.get("root"),
    )
    save_results(
        out,
        dict(
            arch="+".join(a or "?" for a in result["archs"]),
            fused_from=result["runs"],
            images=result["images"],
            protocols={
                p: {k: v for k, v in r.items() if k != "members"} for p, r in result["protocols"].items()
            },
        ),
    )


FUSION_COLUMNS = columns(
    "protocol",
    *error_columns("err", fmt="{:.2f}%"),
    ("members' top-1", "members"),
)


def format_fusion(result: dict) -> str:
    rows = [
        dict(r, protocol=p, members=", ".join(f"{m['top1_err']:.2f}%" for m in r["members"]))
        for p, r in result["protocols"].items()
    ]
    title = (
        f"fusion of {len(result['runs'])} nets ({' + '.join(a or '?' for a in result['archs'])}), "
        f"{result['images']} images"
    )
    return render(rows, FUSION_COLUMNS, title=title)
