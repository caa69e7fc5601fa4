"""The image descriptor of Appendix B.

Per test scale Q: the whole image rescaled so its smallest side is Q, the net applied densely
(§3.2), a named layer's map (fc7 after its ReLU by default; fc8 is removed in the paper, any name
``model.extract`` accepts is allowed) average-pooled over space into a D-dim vector, and averaged
with the same vector of the horizontally flipped image.

Across scales the per-scale descriptors are stacked (concatenated in Q order), averaged or
max-pooled, and the result is L2-normalised. Features are *saved* per scale and un-normalised, so
one extraction serves every combination and any subset of its scales; the combination and the
normalisation happen when an SVM is trained (:func:`descriptor_matrix`).

Late fusion of several nets (the paper's D&E) stacks the nets' descriptors. Decision: each net's
multi-scale descriptor is L2-normalised on its own before stacking, so each net weighs the same
whatever the scale of its activations; the stack is normalised again (a constant 1/sqrt(#nets)).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import open_source
from ..data.loaders import scaled_loader
from ..data.multilabel import source_labels
from ..data.transforms import Normalizer, resolve_test_scales
from ..errors import VGGError, unknown
from ..eval.batching import SizeBatcher
from ..models.weights import load_model
from ..progress import progress as progress_bar
from ..runtime.device import DevicePolicy, make_policy, resolve_device
from ..runtime.forward import forward

COMBINE_MODES = ("stack", "average", "max")
PIXEL_BUDGET = 4 * 512 * 683  # pixels per batch before flipping: bounds memory at large Q


PAPER_SCALES = (256, 384, 512)  # Appendix B: Q in {256, 384, 512} (VOC also 640, 768), scaled by crop/224


def default_feature_scales(crop: int) -> list[int]:
    return sorted({max(crop, round(q * crop / 224)) for q in PAPER_SCALES})


def pooled_descriptor(model, images: torch.Tensor, layer: str) -> torch.Tensor:
    """Normalised (N, 3, H, W) images of one size -> (N, D) float32: `layer`'s map averaged over
    space, then averaged with the flipped images' (Appendix B)."""
    n = images.shape[0]
    out = model.extract(torch.cat([images, images.flip(-1)]), [layer])[layer].float()
    if out.dim() == 4:
        out = out.mean(dim=(2, 3))  # global average pooling; a crop-sized input gives (N, D) already
    return (out[:n] + out[n:]) / 2


def combine_scales(per_scale, mode: str = "stack") -> np.ndarray:
    """A list of (N, D) descriptors in Q order -> (N, D') un-normalised: ``stack`` concatenates
    (D' = #Q * D), ``average`` and ``max`` pool elementwise over Q (D' = D)."""
    arrays = [np.asarray(a, dtype=np.float32) for a in per_scale]
    if not arrays:
        raise VGGError("no per-scale descriptors to combine")
    if mode == "stack":
        return np.concatenate(arrays, axis=1)
    if mode == "average":
        return np.mean(arrays, axis=0, dtype=np.float32)
    if mode == "max":
        return np.max(arrays, axis=0)
    raise unknown("scale combination", mode, COMBINE_MODES)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; an all-zero row (every unit silent) stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.finfo(np.float32).tiny)


def descriptor_matrix(features: dict, combine: str = "stack", scales=None) -> np.ndarray:
    """The SVM's input from a features dict: per net, the chosen scales (default: all) combined
    and L2-normalised; nets stacked in their order and normalised again."""
    qs = list(features["scales"]) if scales is None else sorted({int(q) for q in scales})
    missing = [q for q in qs if q not in features["per_scale"]]
    if missing:
        raise VGGError(f"features were extracted at Q={features['scales']}, not at Q={missing}")
    blocks, start = [], 0
    for net in features["nets"]:
        stop = start + int(net["dim"])
        blocks.append(
            l2_normalise(combine_scales([features["per_scale"][q][:, start:stop] for q in qs], combine))
        )
        start = stop
    return blocks[0] if len(blocks) == 1 else l2_normalise(np.concatenate(blocks, axis=1))


@torch.no_grad()
def compute_features(
    model,
    normalizer: Normalizer,
    source,
    scales,
    layer: str = "fc7",
    *,
    policy=None,
    workers: int = 0,
    batch_size: int = 16,
    progress: bool = False,
    skip_unreadable: bool = False,
    pixel_budget: int = PIXEL_BUDGET,
) -> dict:
    """Per-scale descriptors of every image of `source` (see the module doc).

    Returns a features dict: ``per_scale`` {Q: (N, D) float32, un-normalised}, ``scales``, ``ids``,
    ``classes``, ``labels`` ((N,) int64 or (N, C) int8), ``label_kind``, ``layer``, ``nets``
    (provenance per net, here one), ``unreadable`` ("path: reason" of the images left out, only
    with `skip_unreadable`; otherwise an unreadable image is an error), ``seconds``.
    `policy` (a :class:`vggnet.runtime.device.DevicePolicy`; default the CPU in fp32) says where and
    how the net runs: bf16 autocast and channels_last as for evaluation.
    """
    policy = policy or DevicePolicy(torch.device("cpu"))
    qs = resolve_test_scales(
        scales, False, None, model.crop_size, default=default_feature_scales(model.crop_size)
    )
    if layer not in model.feature_names():
        raise unknown("layer", layer, model.feature_names())
    model.eval()  # fc6/fc7 dropout off: the descriptor is deterministic
    normalizer = normalizer.to(policy.device)
    n = len(source)
    per_scale: dict[int, torch.Tensor] = {}

    def run(key, indices, batch):
        q = key[0]
        d = forward(lambda x: pooled_descriptor(model, x, layer), normalizer, policy, batch).cpu()
        if q not in per_scale:
            per_scale[q] = torch.zeros(n, d.shape[1])
        per_scale[q][indices] = d

    items = progress_bar(scaled_loader(source, qs, workers), n, "features", progress)
    t0 = time.perf_counter()
    done, unreadable = _feed(items, SizeBatcher(run, batch_size, pixel_budget), n, skip_unreadable)
    seconds = time.perf_counter() - t0
    keep = np.flatnonzero(done)
    if len(keep) == 0:
        raise VGGError("no readable images to describe")
    kind, labels = source_labels(source)

    return dict(
        per_scale={q: per_scale[q][keep].numpy().astype(np.float32) for q in qs},
        scales=qs,
        ids=[source.ids[i] for i in keep],
        classes=list(source.classes),
        labels=labels[keep],
        label_kind=kind,
        layer=layer,
        data=str(source.root),
        unreadable=unreadable,
        nets=[dict(checkpoint=None, arch=model.arch, layer=layer, dim=int(per_scale[qs[0]].shape[1]))],
        seconds=seconds,
        images_per_s=len(keep) / max(seconds, 1e-9),
        amp=policy.amp,
        device=policy.describe(),
    )


def _feed(items, batches, n: int, skip_unreadable: bool) -> tuple[np.ndarray, list[str]]:
    """Every decoded image's scales into `batches` (run as they fill); which images were read,
    and the unreadable ones as "path: reason" (an error unless `skip_unreadable`)."""
    done = np.zeros(n, dtype=bool)
    unreadable = []
    for item in items:
        if "error" in item:
            path, reason = item["error"]
            if not skip_unreadable:
                raise VGGError(
                    f"unreadable image {path}: {reason} (--skip-unreadable leaves such images out; "
                    f"they are listed)"
                )
            unreadable.append(f"{path}: {reason}")
            continue
        done[item["index"]] = True
        for q, image in item["images"].items():
            batches.add((q, tuple(image.shape[-2:])), item["index"], image)
    batches.flush()
    return done, unreadable


def features_from_checkpoint(
    checkpoint,
    data,
    scales,
    layer: str = "fc7",
    data_root=None,
    device="auto",
    workers: int = 0,
    batch_size: int = 16,
    amp: str = "auto",
    channels_last: str = "auto",
    progress: bool = False,
    skip_unreadable: bool = False,
) -> dict:
    """Load a weights file and a target data set, and compute the features under the device
    policy (bf16 on CUDA unless `amp` is "off"). The features dict records the checkpoint, its
    architecture and the data path."""

    policy = make_policy(resolve_device(device), amp, channels_last)
    model, meta = load_model(checkpoint, policy.device)
    policy.prepare(model)
    source = open_source(data, data_root)  # classes from the data, not from the net
    features = compute_features(
        model,
        Normalizer(meta.preprocessing),
        source,
        scales,
        layer,
        policy=policy,
        workers=workers,
        batch_size=batch_size,
        progress=progress,
        skip_unreadable=skip_unreadable,
    )
    features["data"] = str(data)
    features["nets"][0]["checkpoint"] = str(Path(checkpoint))
    return features
