"""``vggnet evaluate``: one checkpoint, one data set, several protocols and test scales in one pass.

The steps: plan (weights, scales, data, device policy) -> one pass over the images -> the
combination steps (§4.2 average over Q, §4.3 dense+multicrop) -> figures -> saved posteriors.

In the pass each image is decoded once and rescaled to every Q; equal-sized inputs are batched
(per protocol, scale and size) up to a batch size and a pixel budget, so large Q stays in bounded
memory and small images share a batch; the 50 crops of an image at one scale are one batch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.datasets import open_source, single_label
from ..data.loaders import scaled_loader
from ..data.transforms import Normalizer, Scale, resolve_test_scales
from ..errors import VGGError, unknown
from ..fileio import claim_folder
from ..models.weights import load_model
from ..progress import progress
from ..runtime.device import make_policy, resolve_device
from ..tables import columns, error_columns, render
from .batching import SizeBatcher
from .metrics import topk_errors
from .posteriors import POSTERIORS, RESULTS, save_posteriors, save_results
from .protocols import ALL_PROTOCOLS, COMBINED, PROTOCOLS, Evaluator, average_scales, combine, passes_for


@dataclass
class EvalOptions:
    protocols: tuple = ("dense",)
    scales: list | str | None = None  # test scales Q; default from the training scale (§4.1 / §4.2)
    multi_scale: bool = False
    device: str = "auto"
    amp: str = "auto"  # bf16 autocast on CUDA unless "off"
    channels_last: str = "auto"
    workers: int = 0
    batch_size: int = 32
    pixel_budget: int = 4 * 512 * 683
    half: bool = False  # store posteriors as float16
    skip_unreadable: bool = False
    data_root: str | None = None
    progress: bool = False


def plan(checkpoint, data, opts: EvalOptions) -> dict:
    """Everything checked and loaded before the pass: protocols, weights, scales, data, device."""
    for p in opts.protocols:
        if p not in ALL_PROTOCOLS:
            raise unknown("protocol", p, ALL_PROTOCOLS)
    if opts.batch_size < 1:
        raise VGGError(f"--batch-size must be >= 1, got {opts.batch_size}")
    policy = make_policy(resolve_device(opts.device), opts.amp, opts.channels_last)
    model, meta = load_model(checkpoint, policy.device)
    if meta.model.head != "classifier":
        raise VGGError(
            f"{checkpoint} is a box regressor ({meta.model.head.upper()}); evaluate it with "
            f"`vggnet loc evaluate`"
        )
    model.eval()
    policy.prepare(model)
    crop = model.crop_size
    qs = resolve_test_scales(opts.scales, opts.multi_scale, meta.train.scale if meta.train else None, crop)
    source = single_label(open_source(data, opts.data_root, classes=meta.classes), data)
    evaluator = Evaluator(model, Normalizer(meta.preprocessing).to(policy.device), policy)
    return dict(
        meta=meta,
        model=model,
        crop=crop,
        scales=qs,
        source=source,
        evaluator=evaluator,
        passes=passes_for(opts.protocols),
        policy=policy,
    )


def run_pass(p: dict, opts: EvalOptions) -> dict:
    """The network over every readable image: posteriors per (pass protocol, Q), per image."""
    source, qs, ev = p["source"], p["scales"], p["evaluator"]
    n, c = len(source), p["model"].num_classes
    probs = {(name, q): torch.zeros(n, c) for name in p["passes"] for q in qs}
    seconds, done, unreadable = defaultdict(float), torch.zeros(n, dtype=torch.bool), []

    def run(key, indices, batch):
        protocol, q, _ = key
        t0 = time.perf_counter()
        out = PROTOCOLS[protocol](ev, batch).float().cpu()  # waits for the device: the timing is honest
        seconds[protocol] += time.perf_counter() - t0
        probs[(protocol, q)][indices] = out

    batcher = SizeBatcher(run, opts.batch_size, opts.pixel_budget)
    items = progress(scaled_loader(source, qs, opts.workers), n, "evaluate", opts.progress)
    t_start = time.perf_counter()
    for item in items:
        if "error" in item:
            unreadable.append(_unreadable(item, opts))
            continue
        done[item["index"]] = True
        for q, image in item["images"].items():
            for name in p["passes"]:
                key = (name, q, tuple(image.shape[-2:]))
                batcher.add(key, item["index"], image)
                if name == "multicrop":
                    batcher.flush(key)  # 50 crops per image: one batch each
    batcher.flush()
    keep = done.nonzero().flatten()
    if len(keep) == 0:
        raise VGGError("no readable images to evaluate")
    return dict(
        probs={k: v[keep] for k, v in probs.items()},
        keep=keep.tolist(),
        seconds=seconds,
        unreadable=unreadable,
        wall=time.perf_counter() - t_start,
    )


def _unreadable(item: dict, opts: EvalOptions) -> str:
    path, reason = item["error"]
    if not opts.skip_unreadable:
        raise VGGError(
            f"unreadable image {path}: {reason} (use --skip-unreadable to exclude such "
            f"images; they are counted)"
        )
    return f"{path}: {reason}"


def combine_all(protocols, qs, passed: dict) -> dict:
    """The combination steps after the pass: per protocol and per Q, then averaged over Q (§4.2);
    combined protocols (§4.3) per Q and over Q. Keys: "protocol" and "protocol@Q"."""
    out = {}
    for name in protocols:
        per_q = {}
        for q in qs:
            per_q[q] = (
                combine(name, {p: passed[(p, q)] for p in COMBINED[name]})
                if name in COMBINED
                else passed[(name, q)]
            )
            out[f"{name}@{q}"] = per_q[q]
        out[name] = (
            combine(name, {p: average_scales({q: passed[(p, q)] for q in qs}) for p in COMBINED[name]})
            if name in COMBINED
            else average_scales(per_q)
        )
    return out


def summarise(p: dict, opts: EvalOptions, passed: dict, final: dict, labels, checkpoint, data) -> dict:
    qs, meta = p["scales"], p["meta"]
    rows = {}
    for name in opts.protocols:
        seconds = sum(passed["seconds"][part] for part in COMBINED.get(name, (name,)))
        rows[name] = dict(
            topk_errors(final[name], labels),
            images_per_s=len(labels) / max(seconds, 1e-9),
            scales=qs,
            per_scale={str(q): topk_errors(final[f"{name}@{q}"], labels) for q in qs},
        )
    return dict(
        checkpoint=str(checkpoint),
        arch=meta.model.arch,
        arch_args=meta.model.kwargs(),
        train_scale=list(meta.train.scale) if meta.train else None,
        crop=p["crop"],
        data=str(data),
        images=len(labels),
        unreadable=passed["unreadable"],
        scales=qs,
        protocols=rows,
        wall_seconds=passed["wall"],
        device=p["policy"].describe(),
        classes=len(meta.classes),
    )


def evaluate(checkpoint, data, protocols=("dense",), out=None, force=False, **options) -> dict:
    """Evaluate `checkpoint` on `data` under `protocols` (see :class:`EvalOptions` for the rest).
    With `out`, the posteriors and figures are saved there for fusion and tables."""
    opts = EvalOptions(protocols=tuple(protocols), **options)
    out = Path(out) if out else None
    if out is not None:
        claim_folder(out, {POSTERIORS: "posteriors", RESULTS: "results"}, force)
    p = plan(checkpoint, data, opts)
    passed = run_pass(p, opts)
    final = combine_all(opts.protocols, p["scales"], passed["probs"])
    labels = torch.tensor([p["source"].samples[i][1] for i in passed["keep"]])
    result = summarise(p, opts, passed, final, labels, checkpoint, data)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        saved = dict(final, **{f"{k[0]}@{k[1]}": v for k, v in passed["probs"].items()})
        save_posteriors(
            out,
            [p["source"].ids[i] for i in passed["keep"]],
            list(p["meta"].classes),
            labels,
            saved,
            scales=p["scales"],
            protocols=list(opts.protocols),
            half=opts.half,
            root=str(Path(p["source"].root).resolve()),
        )
        save_results(out, result)
    return result


RESULT_COLUMNS = columns(
    "protocol",
    *error_columns("err", fmt="{:.2f}%"),
    ("images/s", "images_per_s", "{:.1f}"),
)


def format_table(result: dict) -> str:
    qs = ",".join(str(q) for q in result["scales"])
    train = Scale(*result["train_scale"]).paper() if result["train_scale"] else "?"
    title = (
        f"{result['arch']} (train S={train}, test Q={{{qs}}}, {result['images']} images, {result['device']})"
    )
    rows = [dict(r, protocol=name) for name, r in result["protocols"].items()]
    text = render(rows, RESULT_COLUMNS, title=title)
    if result["unreadable"]:
        text += f"\n{len(result['unreadable'])} unreadable images excluded"
    return text
