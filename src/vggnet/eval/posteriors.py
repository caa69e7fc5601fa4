"""The per-image posteriors of an evaluation, saved once so that fusion (§4.4, Table 6), the tables
and localisation's class guesses never rerun a network (STYLE: cached intermediate results).

An evaluation folder holds ``posteriors.safetensors``: ``labels`` (N,) and, per protocol, the
multi-scale posteriors ``probs/<protocol>`` (N, C) and each scale's own ``probs/<protocol>@<Q>``;
its header gives the image ids (paths relative to the data root, in row order), the class names,
the test scales and the protocols. ``results.json`` beside it holds the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch

from ..errors import VGGError
from ..fileio import atomic_write, loads_json, read_json, read_safetensors, write_json

POSTERIORS, RESULTS = "posteriors.safetensors", "results.json"


def save_posteriors(
    out,
    ids: list[str],
    classes: list[str],
    labels: torch.Tensor,
    probs: dict,
    scales: list[int],
    protocols: list[str],
    half: bool = False,
    root: str | None = None,
) -> Path:
    """`probs` maps "protocol" and "protocol@Q" to (N, C) posteriors; `root` is the folder the
    ids are relative to (so that other tools can find the images)."""

    dtype = torch.float16 if half else torch.float32
    tensors = {
        "labels": labels.contiguous(),
        **{f"probs/{k}": v.to(dtype).contiguous() for k, v in probs.items()},
    }
    header = {
        "ids": json.dumps(ids),
        "classes": json.dumps(classes),
        "scales": json.dumps(list(scales)),
        "protocols": json.dumps(list(protocols)),
        "root": json.dumps(str(root) if root else None),
    }
    return atomic_write(
        Path(out) / POSTERIORS, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata=header)
    )


def load_posteriors(run_dir) -> dict:
    """dict(dir, ids, classes, scales, protocols, labels, probs={name: float32 (N, C)}, results)."""
    path = Path(run_dir) / POSTERIORS
    if not path.is_file():
        raise VGGError(f"no saved posteriors in {run_dir} (expected {path}; run `vggnet evaluate --out`)")
    header, tensors = read_safetensors(path, "posteriors file of `vggnet evaluate`")
    try:
        fields = {k: loads_json(header[k]) for k in ("ids", "classes", "scales", "protocols")}
        root = loads_json(header.get("root", "null"))
    except (ValueError, KeyError) as e:
        raise VGGError(
            f"{path}: not a posteriors file of `vggnet evaluate` ({type(e).__name__}: {e})"
        ) from None
    kinds = dict(ids=str, classes=str, scales=int, protocols=str)
    wrong = [
        k
        for k, t in kinds.items()
        if not isinstance(fields[k], list)
        or not all(isinstance(v, t) and not isinstance(v, bool) for v in fields[k])
    ]
    if wrong:
        raise VGGError(
            f"{path}: not a posteriors file of `vggnet evaluate` (its {wrong[0]!r} are not a list of "
            f"{kinds[wrong[0]].__name__})"
        )
    fields["root"] = root if isinstance(root, str) else None
    labels = tensors.get("labels")
    probs = {k[len("probs/") :]: v.float() for k, v in tensors.items() if k.startswith("probs/")}
    n = len(fields["ids"])
    if (
        labels is None
        or len(labels) != n
        or any(v.shape != (n, len(fields["classes"])) for v in probs.values())
    ):
        raise VGGError(f"{path}: ids, labels and posteriors disagree in size")
    if not all(torch.isfinite(v).all() for v in probs.values()):
        raise VGGError(f"{path}: posteriors that are not finite numbers")
    results_path = Path(run_dir) / RESULTS
    results = read_results(run_dir) if results_path.is_file() else {}
    return dict(dir=str(run_dir), **fields, labels=labels, probs=probs, results=results)


def save_results(out, result: dict) -> Path:
    return write_json(Path(out) / RESULTS, result)


def read_results(run_dir) -> dict:
    """An evaluation folder's ``results.json``, checked: the fields the tables read are there and
    are what they should be (numbers, scales), else the file is refused by name."""

    path = Path(run_dir) / RESULTS
    if not path.is_file():
        raise VGGError(f"no evaluation results in {run_dir} (expected {path}; run `vggnet evaluate --out`)")
    r = read_json(path, "results file of `vggnet evaluate`")

    def bad(what):
        return VGGError(f"{path}: not a results file of `vggnet evaluate` ({what})")

    protocols = r.get("protocols")
    if not isinstance(protocols, dict) or not protocols:
        raise bad("no 'protocols'")
    for name, v in protocols.items():
        if not isinstance(v, dict) or not all(_percent(v.get(k)) for k in ("top1_err", "top5_err")):
            raise bad(f"protocol {name!r} has no top-1/top-5 error in [0, 100]")
        per_scale = v.get("per_scale", {})
        if not isinstance(per_scale, dict) or not all(
            isinstance(e, dict) and _percent(e.get("top1_err")) and _percent(e.get("top5_err"))
            for e in per_scale.values()
        ):
            raise bad(f"protocol {name!r} has damaged per-scale errors")
    for key, n in (("scales", None), ("train_scale", 2)):
        value = r.get(key)
        if value is not None and not (
            isinstance(value, list)
            and (n is None or len(value) == n)
            and all(isinstance(q, int) and not isinstance(q, bool) and q > 0 for q in value)
        ):
            raise bad(f"{key!r} must be a list of {n or 'some'} positive integers, got {value!r}")
    if "arch" in r and not isinstance(r["arch"], (str, type(None))):
        raise bad("'arch' is not a name")
    return r


def _percent(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100
