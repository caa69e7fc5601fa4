"""``vggnet predict``: the top-5 classes of images, with names and probabilities, under any of the
paper's test protocols (§3.2: dense by default; multi-scale §4.2) and the weights' own
preprocessing (whatever their origin: ours, torchvision's or the Caffe release's).

    from vggnet.predict import predict
    predict("vgg16.safetensors", "cat.jpg")             # or a PIL image, or a list of either
    -> [{"image": "cat.jpg", "top": [{"class": "n02123045", "name": "tabby", "prob": 0.61}, ...]}]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data.imagenet import readable_names
from .data.images import _to_rgb, load_rgb
from .data.transforms import Normalizer, rescale, resolve_test_scales
from .errors import VGGError, unknown
from .eval.protocols import ALL_PROTOCOLS, COMBINED, PROTOCOLS, Evaluator, average_scales, combine
from .models.weights import load_model
from .runtime.device import make_policy, resolve_device


def _picture(image):
    if isinstance(image, (str, Path)):
        if Path(image).is_dir():
            raise VGGError(
                f"{image} is a folder; predict takes image files (use `vggnet evaluate` for a data set)"
            )
        return str(image), load_rgb(image)
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        return "<image>", _to_rgb(image)
    raise VGGError(f"predict takes image paths or PIL images, got {type(image).__name__}")


def _posteriors(ev: Evaluator, picture, qs, protocol: str) -> torch.Tensor:
    per_q = {}
    for q in qs:
        x = torch.from_numpy(np.array(rescale(picture, q), dtype=np.uint8)).permute(2, 0, 1)[None]
        parts = COMBINED.get(protocol, (protocol,))
        probs = {p: PROTOCOLS[p](ev, x)[0].float().cpu() for p in parts}
        per_q[q] = combine(protocol, probs) if protocol in COMBINED else probs[protocol]
    return average_scales(per_q)  # §4.2


def predict(
    weights,
    images,
    *,
    protocol: str = "dense",
    multi_scale: bool = False,
    scales=None,
    top: int = 5,
    device: str = "auto",
    channels_last: str = "auto",
    amp: str = "auto",
) -> list[dict]:
    if protocol not in ALL_PROTOCOLS:
        raise unknown("protocol", protocol, ALL_PROTOCOLS)
    policy = make_policy(resolve_device(device), amp, channels_last)
    model, meta = load_model(weights, policy.device) if isinstance(weights, (str, Path)) else weights
    if meta.model.head != "classifier":
        raise VGGError("predict takes a classifier; box regressors are for `vggnet loc evaluate`")
    policy.prepare(model.eval())
    ev = Evaluator(model, Normalizer(meta.preprocessing).to(policy.device), policy)
    qs = resolve_test_scales(scales, multi_scale, meta.train.scale if meta.train else None, model.crop_size)
    names = readable_names(meta.classes)
    out = []
    for image in images if isinstance(images, (list, tuple)) else [images]:
        label, picture = _picture(image)
        probs = _posteriors(ev, picture, qs, protocol)
        best = probs.topk(min(top, len(probs)))
        out.append(
            dict(
                image=label,
                protocol=protocol,
                scales=qs,
                top=[
                    dict(rank=r + 1, **{"class": meta.classes[i]}, name=names[i], prob=float(p))
                    for r, (p, i) in enumerate(zip(best.values.tolist(), best.indices.tolist()))
                ],
            )
        )
    return out
