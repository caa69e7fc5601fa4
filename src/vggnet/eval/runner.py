"""``vggnet evaluate``: one checkpoint, one data set, several protocols and test scales in one pass.

Each image is decoded once and rescaled to every Q; equal-sized inputs are batched (per protocol,
scale and size) up to a batch size and a pixel budget, so large Q stays in bounded memory and
small images share a batch; the 50 crops of an image at one scale are one batch. Per-image
posteriors are saved (``posteriors.safetensors``: labels and, per protocol, the multi-scale average
and each scale's own) so that fusion (Table 6) and tables need no network run.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from ..data.datasets import open_source
from ..data.loaders import scaled_loader
from ..data.transforms import Normalizer
from ..errors import VGGError, unknown
from ..fileio import atomic_write, write_json
from ..models.weights import load_model
from .metrics import topk_errors
from .protocols import PROTOCOLS, Evaluator

POSTERIORS, RESULTS = "posteriors.safetensors", "results.json"


def default_scales(meta: dict, crop: int, multi: bool) -> list[int]:
    """Test scales Q from the training scale (§4.1 single, §4.2 multi), scaled by crop/224."""
    train = meta.get("train") or {}
    lo, hi = train.get("scale") or [round(256 * crop / 224)] * 2
    step = round(32 * crop / 224)
    if lo == hi:
        qs = [lo - step, lo, lo + step] if multi else [lo]
    else:
        qs = [lo, (lo + hi) // 2, hi] if multi else [(lo + hi) // 2]
    return sorted({max(crop, q) for q in qs})


def parse_scales(text: str) -> list[int]:
    try:
        qs = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise VGGError(f"--scales takes comma-separated integers, e.g. 256,384,512; got {text!r}") from None
    if not qs:
        raise VGGError("--scales is empty")
    return sorted(set(qs))


class _Batcher:
    """Collects equal-sized inputs per key and runs them together."""

    def __init__(self, run, batch_size: int, pixel_budget: int):
        self.run, self.batch_size, self.pixel_budget = run, batch_size, pixel_budget
        self.pending: dict = defaultdict(list)

    def add(self, key, index: int, tensor: torch.Tensor):
        items = self.pending[key]
        items.append((index, tensor))
        pixels = tensor.shape[-1] * tensor.shape[-2] * len(items)
        if len(items) >= self.batch_size or pixels >= self.pixel_budget:
            self.flush(key)

    def flush(self, key=None):
        for k in ([key] if key is not None else list(self.pending)):
            items = self.pending.pop(k, [])
            if items:
                self.run(k, [i for i, _ in items], torch.stack([t for _, t in items]))


def evaluate(checkpoint, data, protocols=("dense",), scales=None, multi_scale=False, out=None, device="auto",
             workers=0, batch_size=32, pixel_budget=4 * 512 * 683, half=False, skip_unreadable=False,
             data_root=None, progress=False, force=False) -> dict:
    for p in protocols:
        if p not in PROTOCOLS:
            raise unknown("protocol", p, PROTOCOLS)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    out = Path(out) if out else None
    if out is not None and (out / RESULTS).exists() and not force:
        raise VGGError(f"{out} already holds evaluation results; refusing to overwrite them (choose a new --out, or --force)")
    model, meta = load_model(checkpoint, dev)
    model.eval()
    crop = model.crop_size
    qs = sorted(set(scales)) if scales else default_scales(meta, crop, multi_scale)
    small = [q for q in qs if q < crop]
    if small:
        raise VGGError(f"test scale Q={small[0]} is smaller than the crop size {crop}")
    classes = meta.get("classes") or [str(i) for i in range(model.num_classes)]
    if len(classes) != model.num_classes:
        raise VGGError(f"checkpoint lists {len(classes)} classes but the net has {model.num_classes} outputs")
    source = open_source(data, data_root, classes=classes)
    cuda = dev.type == "cuda"
    normalizer = Normalizer(meta.get("preprocessing") or {}).to(dev)
    ev = Evaluator(model, normalizer, dev, amp=cuda, channels_last=cuda)
    if cuda:
        model.to(memory_format=torch.channels_last)

    n, c = len(source), model.num_classes
    base = [p for p in protocols if p != "dense+multicrop"]
    if "dense+multicrop" in protocols:
        base = sorted(set(base) | {"dense", "multicrop"}, key=PROTOCOLS.index)
    probs = {(p, q): torch.zeros(n, c) for p in base for q in qs}
    seconds = defaultdict(float)
    done = torch.zeros(n, dtype=torch.bool)

    def run(key, indices, batch):
        protocol, q, _ = key
        t0 = time.perf_counter()
        if protocol == "center":
            out_probs = ev.center(batch)
        elif protocol == "dense":
            out_probs = ev.dense(batch)
        else:
            out_probs = torch.stack([ev.multicrop(im) for im in batch])
        out_probs = out_probs.float().cpu()  # waits for the device: the timing is honest
        seconds[protocol] += time.perf_counter() - t0
        probs[(protocol, q)][indices] = out_probs

    batcher = _Batcher(run, batch_size, pixel_budget)
    unreadable = []
    it = scaled_loader(source, qs, workers)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=n, desc="evaluate", unit="img", dynamic_ncols=True)
    t_start = time.perf_counter()
    for item in it:
        i = item["index"]
        if "error" in item:
            path, reason = item["error"]
            if not skip_unreadable:
                raise VGGError(f"unreadable image {path}: {reason} (use --skip-unreadable to exclude such "
                               f"images; they are counted)")
            unreadable.append(f"{path}: {reason}")
            continue
        done[i] = True
        for q, image in item["images"].items():
            size = tuple(image.shape[-2:])
            for p in base:
                if p == "multicrop":
                    batcher.add(("multicrop", q, size), i, image)  # 50 crops per image: one batch each
                    batcher.flush(("multicrop", q, size))
                else:
                    batcher.add((p, q, size), i, image)
    batcher.flush()
    wall = time.perf_counter() - t_start
    keep = done.nonzero().flatten()
    if len(keep) == 0:
        raise VGGError("no readable images to evaluate")
    labels = torch.tensor([source.samples[i][1] for i in keep.tolist()])
    ids = [source.ids[i] for i in keep.tolist()]
    final = {}
    for p in base:
        final[p] = torch.stack([probs[(p, q)][keep] for q in qs]).mean(0)  # §4.2: average over scales
    if "dense+multicrop" in protocols:
        final["dense+multicrop"] = (final["dense"] + final["multicrop"]) / 2  # §4.3
        seconds["dense+multicrop"] = seconds["dense"] + seconds["multicrop"]
    rows = {}
    for p in protocols:
        err = topk_errors(final[p], labels)
        rows[p] = dict(err, images_per_s=len(keep) / max(seconds[p], 1e-9), scales=qs)
        for q in qs:
            per_q = probs[(p, q)][keep] if p in base else (probs[("dense", q)][keep] + probs[("multicrop", q)][keep]) / 2
            rows[p].setdefault("per_scale", {})[str(q)] = topk_errors(per_q, labels)
    train = meta.get("train") or {}
    result = dict(checkpoint=str(checkpoint), arch=meta.get("arch", {}).get("name"), arch_args=meta.get("arch"),
                  train_scale=train.get("scale"), crop=crop, data=str(data), images=len(keep),
                  unreadable=unreadable, scales=qs, protocols=rows, wall_seconds=wall, device=str(dev),
                  classes=len(classes))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"labels": labels}
        dtype = torch.float16 if half else torch.float32
        for p in protocols:
            tensors[f"probs/{p}"] = final[p].to(dtype).contiguous()
        for (p, q), t in probs.items():
            tensors[f"probs/{p}@{q}"] = t[keep].to(dtype).contiguous()
        from safetensors.torch import save_file
        header = {"ids": json.dumps(ids), "classes": json.dumps(classes), "scales": json.dumps(qs),
                  "protocols": json.dumps(list(protocols))}
        atomic_write(out / POSTERIORS, lambda tmp: save_file(tensors, tmp, metadata=header))
        write_json(out / RESULTS, result)
    return result


def format_table(result: dict) -> str:
    qs = ",".join(str(q) for q in result["scales"])
    lines = [f"{result['arch']} (train S={_fmt_s(result['train_scale'])}, test Q={{{qs}}}, "
             f"{result['images']} images, {result['device']})",
             f"{'protocol':<16} {'top-1 err':>9} {'top-5 err':>9} {'images/s':>9}"]
    for p, r in result["protocols"].items():
        lines.append(f"{p:<16} {r['top1_err']:>8.2f}% {r['top5_err']:>8.2f}% {r['images_per_s']:>9.1f}")
    if result["unreadable"]:
        lines.append(f"{len(result['unreadable'])} unreadable images excluded")
    return "\n".join(lines)


def _fmt_s(scale) -> str:
    if not scale:
        return "?"
    lo, hi = scale
    return str(lo) if lo == hi else f"[{lo};{hi}]"
