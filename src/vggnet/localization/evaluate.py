"""``vggnet loc evaluate`` and ``vggnet loc merge``: Appendix A's two test protocols.

Protocol 1 (Table 8): the centre crop of the image rescaled to Q (the localisation net's own
single test scale, §4.1), the box predicted for the ground-truth class; classification errors
are excluded.

Protocol 2 (Table 9): the localisation net applied densely over the whole image at one or several
Q; every output location gives a box (per class for PCR) in the frame of its crop-sized window,
mapped back to image pixels. The top-k classes come from a classification system: a
classification checkpoint run here (dense, multi-scale, §4.2), or the posteriors saved by
``vggnet evaluate`` (nothing recomputed). Per class, the boxes of every location and scale are
merged greedily (``merge.py``) and the merged boxes are ranked by the classification scores; an
image is right when one of its top-k (class, box) guesses has the right class and IoU >= 0.5.

A location's box scores the classification net's soft-max probability of the class at that same
location when a classification checkpoint of the same crop size is given (the two nets' windows
coincide); otherwise (saved posteriors) every location scores 1, so a merged box scores the
number of raw boxes it absorbed.

The raw boxes of the top-k classes are saved (``boxes.safetensors``), so that merging thresholds,
fusion of several localisation nets (the union of their boxes before merging, Table 9's last row)
and tables never rerun a network: ``vggnet loc merge``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F

from ..data.boxfiles import BoxSource, split_by_image
from ..data.imagenet import readable_names
from ..data.loaders import scaled_loader
from ..data.transforms import Normalizer, Scale, center_crop, default_scales, resolve_test_scales
from ..errors import VGGError
from ..eval.posteriors import load_posteriors
from ..eval.protocols import dense_posteriors, with_flips
from ..fileio import atomic_write, claim_folder, loads_json, read_safetensors, write_json
from ..models.meta import WeightsMeta
from ..models.weights import load_model
from ..progress import progress
from ..runtime.device import DevicePolicy, make_policy, resolve_device
from ..runtime.forward import forward
from .boxes import clip, decode, dense_windows, window_to_image
from .gallery import contact_sheet
from .merge import merge_per_class, rank_guesses
from .metrics import box_hits, gt_class_box_error, localisation_error
from .objective import open_boxes

BOXES, RESULTS = "boxes.safetensors", "results.json"
DEFAULT_THRESHOLD = 0.0  # merge while centre distance / size < IoU; tune it: `vggnet loc merge --tune`
TUNE_GRID = (-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class LocOptions:
    protocols: tuple = ("center", "dense")
    scales: list | None = None  # Q for protocol 2; default §4.1 (one) or §4.2 (three, multi_scale)
    multi_scale: bool = False
    classifier: str | None = None  # a classification checkpoint for the top-k classes
    posteriors: str | None = None  # or an evaluation folder of `vggnet evaluate`
    top_k: int = 5
    flip: bool = False  # also the horizontally flipped image's boxes (flipped back)
    threshold: float = DEFAULT_THRESHOLD
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    workers: int = 0
    data_root: str | None = None
    on_bad_box: str = "fail"
    progress: bool = False


# -- planning -------------------------------------------------------------------------------------
def _class_scores_from_posteriors(folder, classes) -> dict:
    """Saved image posteriors by absolute image path: {path: (C,) scores}."""
    post = load_posteriors(folder)
    if post["classes"] != list(classes):
        raise VGGError(f"{folder}: posteriors over other classes than the localisation net's")
    root = post.get("root") or (post["results"] or {}).get("root")
    if not root:
        raise VGGError(f"{folder}: the posteriors do not record their data root; rerun `vggnet evaluate`")
    protocol = next(
        (p for p in ("dense+multicrop", "multicrop", "dense", "center") if p in post["probs"]), None
    )
    return {str(Path(root, i).resolve()): post["probs"][protocol][n] for n, i in enumerate(post["ids"])}


def check_threshold(t) -> None:
    if t is not None and not (isinstance(t, (int, float)) and -1 <= t < 1e6):
        raise VGGError(f"--threshold must be a number >= -1 (the lowest match score), got {t!r}")


@dataclass
class LocPlan:
    """What one pass of ``loc evaluate`` runs with, resolved from the options before any image is
    read: the box net, its boxes, its scales and where the class ranking comes from (a classifier
    run here, with its own normalisation, or saved posteriors)."""

    model: torch.nn.Module
    meta: WeightsMeta
    source: BoxSource
    policy: DevicePolicy
    norm: Normalizer
    center_q: int
    scales: list[int]
    classifier: torch.nn.Module | None = None
    cls_norm: Normalizer | None = None
    saved_scores: dict | None = None


def plan(checkpoint, data, opts: LocOptions) -> LocPlan:
    if opts.top_k < 1:
        raise VGGError(f"--top-k must be >= 1, got {opts.top_k}")
    check_threshold(opts.threshold)
    if opts.classifier and opts.posteriors:
        raise VGGError("give --classifier or --posteriors, not both")
    policy = make_policy(resolve_device(opts.device), opts.amp, opts.channels_last)
    model, meta = load_model(checkpoint, policy.device)
    if meta.model.head == "classifier":
        raise VGGError(
            f"{checkpoint} is a classifier; `vggnet loc evaluate` takes a box regressor "
            f"(trained with `vggnet loc train`)"
        )
    train = Scale(*meta.train.scale) if meta.train else None
    p = LocPlan(
        policy.prepare(model.eval()),
        meta,
        open_boxes(data, opts.data_root, meta.classes, opts.on_bad_box),
        policy,
        Normalizer(meta.preprocessing).to(policy.device),
        center_q=default_scales(train, model.crop_size)[0],
        scales=resolve_test_scales(opts.scales, opts.multi_scale, train, model.crop_size),
    )
    if "dense" not in opts.protocols:
        return p
    if opts.classifier:
        cls, cls_meta = load_model(opts.classifier, policy.device)
        if cls_meta.classes != meta.classes or cls_meta.model.head != "classifier":
            raise VGGError(f"{opts.classifier}: not a classifier over the localisation net's classes")
        p.classifier = policy.prepare(cls.eval())
        p.cls_norm = Normalizer(cls_meta.preprocessing).to(policy.device)
    elif opts.posteriors:
        p.saved_scores = _class_scores_from_posteriors(opts.posteriors, meta.classes)
    else:
        raise VGGError(
            "protocol 2 (dense) needs the classes of a classification system: --classifier CKPT "
            "or --posteriors EVAL_DIR (or ask only for --protocol center)"
        )
    return p


# -- the pass -------------------------------------------------------------------------------------
def _box_outputs(p: LocPlan, c: int) -> slice:
    return slice(4 * c, 4 * c + 4) if p.meta.model.head == "pcr" else slice(0, 4)


@torch.no_grad()
def _center_boxes(p: LocPlan, image: torch.Tensor, classes, size) -> np.ndarray:
    """The centre crop's boxes for `classes` (protocol 1: the ground-truth class), in image pixels,
    clipped to the image like protocol 2's (a box cannot localise beyond the picture)."""
    crop = p.model.crop_size
    out = forward(p.model, p.norm, p.policy, center_crop(image, crop)[None])[0].cpu()
    h, w = image.shape[-2:]
    boxes = decode(
        torch.stack([out[_box_outputs(p, c)] for c in classes]).numpy(),
        ((w - crop) // 2, (h - crop) // 2),
        crop,
    )
    boxes[:, 0::2] *= size[0] / w
    boxes[:, 1::2] *= size[1] / h
    return clip(boxes, *size)


@torch.no_grad()
def _dense_at(p: LocPlan, image: torch.Tensor, flip: bool):
    """At one scale: the box map (B, outputs, h, w) of the image (B = 1), or of the image and its
    flip (B = 2, `flip`), and, with a classifier, its score map (2, C, h, w) of the image and its
    flip: the classes are ranked by `vggnet evaluate`'s dense rule, which always averages the flip
    (§3.2), whether or not the flip's boxes are wanted."""
    x = with_flips(image[None])
    boxes = forward(p.model.dense, p.norm, p.policy, x if flip else x[:1]).cpu()
    scores = None
    if p.classifier is not None:
        scores = forward(p.classifier.dense, p.cls_norm, p.policy, x).cpu()
    return boxes, scores


def _image_scores(p: LocPlan, maps: list, path: str) -> torch.Tensor:
    """The image's class posteriors: the classifier's dense protocol over the scales (§3.2,
    §4.2), or the saved ones."""
    if p.saved_scores is not None:
        key = str(Path(path).resolve())
        if key not in p.saved_scores:
            raise VGGError(f"{path}: not among the images of the saved posteriors")
        return p.saved_scores[key]
    return torch.stack([dense_posteriors(s)[0] for s in maps]).mean(0)


def _raw_boxes(p: LocPlan, per_scale: list, classes, size) -> list[tuple]:
    """(class, boxes (M, 4) in image pixels, location scores (M,)) for the chosen classes."""
    out = []
    for c in classes:
        boxes, scores = [], []
        for (box_map, score_map), (w, h) in per_scale:
            windows = dense_windows(*box_map.shape[-2:])
            for b in range(box_map.shape[0]):  # the image, then its flip
                params = box_map[b, _box_outputs(p, c)].permute(1, 2, 0).reshape(-1, 4).numpy()
                boxes.append(
                    window_to_image(
                        params,
                        windows,
                        p.model.crop_size,
                        (w / size[0], h / size[1]),
                        flip_width=w if b == 1 else None,
                        clip_to=size,
                    )
                )
                if score_map is not None and score_map.shape[-2:] == box_map.shape[-2:]:
                    # the flip's boxes and scores are both in the flipped image's location order
                    scores.append(F.softmax(score_map[b], 0)[c].reshape(-1).numpy())
                else:
                    scores.append(np.ones(len(params)))
        out.append((int(c), np.concatenate(boxes), np.concatenate(scores)))
    return out


def run_pass(p: LocPlan, opts: LocOptions) -> dict:
    source, qs = p.source, p.scales
    images = source.images
    wanted = sorted(set(qs) | ({p.center_q} if "center" in opts.protocols else set()))
    center = np.full((len(images), 4), np.nan)
    center_topk = np.full((len(images), opts.top_k, 4), np.nan)  # the centre crop's box per guessed class
    scores = np.zeros((len(images), len(source.classes)), dtype=np.float32)
    raw = []  # (image, class, boxes, scores)
    for item in progress(
        scaled_loader(source.as_source(), wanted, opts.workers), len(images), "loc", opts.progress
    ):
        i = item["index"]
        if "error" in item:
            raise VGGError(f"unreadable image {item['error'][0]}: {item['error'][1]}")
        im = images[i]
        if "center" in opts.protocols:
            center[i] = _center_boxes(p, item["images"][p.center_q], [im.label], im.size)[0]
        if "dense" not in opts.protocols:
            continue
        per_scale = [
            (_dense_at(p, item["images"][q], opts.flip), tuple(item["images"][q].shape[-1:-3:-1])) for q in qs
        ]
        scores[i] = _image_scores(p, [s for (_, s), _ in per_scale if s is not None], im.path).numpy()
        top = np.argsort(-scores[i], kind="stable")[: opts.top_k]
        raw += [(i, c, b, s) for c, b, s in _raw_boxes(p, per_scale, top, im.size)]
        if "center" in opts.protocols:
            center_topk[i, : len(top)] = _center_boxes(p, item["images"][p.center_q], top, im.size)
    return dict(center=center, center_topk=center_topk, scores=scores, raw=raw)


# -- saved predictions ------------------------------------------------------------------------------
def save_predictions(out: Path, p: LocPlan, passed: dict, checkpoint, data) -> Path:
    raw = passed["raw"]

    def cat(k):
        return np.concatenate([r[k] for r in raw]) if raw else np.zeros((0, 4) if k == 2 else 0)

    tensors = {
        "center": torch.from_numpy(passed["center"]).float(),
        "center_topk": torch.from_numpy(passed["center_topk"]).float(),
        "class_scores": torch.from_numpy(passed["scores"]),
        "boxes": torch.from_numpy(cat(2)).float(),
        "box_scores": torch.from_numpy(cat(3)).float(),
        "box_image": torch.tensor(
            np.concatenate([[r[0]] * len(r[2]) for r in raw]) if raw else [], dtype=torch.int64
        ),
        "box_class": torch.tensor(
            np.concatenate([[r[1]] * len(r[2]) for r in raw]) if raw else [], dtype=torch.int64
        ),
    }
    header = {
        "vggnet-boxes": json.dumps(
            dict(
                ids=[im.id for im in p.source.images],
                classes=p.source.classes,
                checkpoint=str(checkpoint),
                data=str(data),
                scales=p.scales,
                center_q=p.center_q,
                head=p.meta.model.head,
            )
        )
    }
    return atomic_write(out / BOXES, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata=header))


def load_predictions(folder) -> dict:
    path = Path(folder) / BOXES
    if not path.is_file():
        raise VGGError(
            f"no saved box predictions in {folder} (expected {path}; run `vggnet loc evaluate --out`)"
        )
    header, tensors = read_safetensors(path, "box predictions file", framework="np")
    try:
        info = loads_json(header["vggnet-boxes"])
        if not isinstance(info, dict) or not isinstance(info.get("ids"), list):
            raise ValueError("no image ids")
    except (ValueError, KeyError) as e:
        raise VGGError(f"{path}: not a box predictions file ({type(e).__name__}: {e})") from None
    return dict(info, **tensors, dir=str(folder))


# -- scoring ----------------------------------------------------------------------------------------
def _guesses(pred: dict, threshold: float, top_k: int) -> list[list]:
    """Per image, up to top_k (class, box) guesses after merging each class's boxes."""
    by_image: dict[int, dict] = {}
    for i, c, b, s in zip(pred["box_image"], pred["box_class"], pred["boxes"], pred["box_scores"]):
        by_image.setdefault(int(i), {}).setdefault(int(c), ([], []))
        by_image[int(i)][int(c)][0].append(b)
        by_image[int(i)][int(c)][1].append(s)
    guesses = []
    for i in range(len(pred["ids"])):
        per_class = {c: (np.array(b), np.array(s)) for c, (b, s) in by_image.get(i, {}).items()}
        guesses.append(rank_guesses(merge_per_class(per_class, threshold), pred["class_scores"][i], top_k))
    return guesses


def _baselines(source, guesses_classes: list, mean_box: np.ndarray | None) -> dict:
    """Two boxes that need no localisation net, with the same class guesses: the whole image,
    and the mean training box (relative size) placed at the image centre."""
    rows = {}
    whole = [
        [(c, np.array([0, 0, im.size[0], im.size[1]], float)) for c in cs]
        for im, cs in zip(source.images, guesses_classes)
    ]
    rows["whole image"] = whole
    if mean_box is not None:

        def centred(im):
            w, h = mean_box[0] * im.size[0], mean_box[1] * im.size[1]
            return np.array(
                [(im.size[0] - w) / 2, (im.size[1] - h) / 2, (im.size[0] + w) / 2, (im.size[1] + h) / 2]
            )

        rows["mean training box, centred"] = [
            [(c, centred(im)) for c in cs] for im, cs in zip(source.images, guesses_classes)
        ]
    return rows


def score(pred: dict, source, threshold: float, top_k: int = 5, mean_box=None) -> dict:
    """Protocol 1 and protocol 2 errors (and the two baselines) from saved predictions."""
    if [im.id for im in source.images] != list(pred["ids"]):
        raise VGGError(f"{pred['dir']}: the predictions are for other images than the box data given")
    out = {}
    if not np.isnan(pred["center"]).all():
        gt_boxes = [im.gt_boxes() for im in source.images]
        whole = np.array([[0, 0, im.size[0], im.size[1]] for im in source.images], float)
        out["center"] = dict(
            gt_class_err=gt_class_box_error(pred["center"], gt_boxes, whole),
            whole_image_gt_class_err=gt_class_box_error(whole, gt_boxes, whole),
        )
        if mean_box is not None:
            base = [
                [(im.label, b) for c, b in row]
                for im, row in zip(
                    source.images,
                    _baselines(source, [[im.label] for im in source.images], mean_box)[
                        "mean training box, centred"
                    ],
                )
            ]
            out["center"]["mean_box_gt_class_err"] = gt_class_box_error(
                np.array([r[0][1] for r in base]), [im.gt_boxes() for im in source.images]
            )
    if len(pred["boxes"]):
        guesses = _guesses(pred, threshold, top_k)
        gt = [(im.label, im.boxes, im.box_classes) for im in source.images]
        out["dense"] = dict(
            threshold=threshold, **localisation_error([(g, *t) for g, t in zip(guesses, gt)], (1, top_k))
        )
        classes = [list(np.argsort(-s, kind="stable")[:top_k]) for s in pred["class_scores"]]
        out["baselines"] = {
            name: localisation_error([(g, *t) for g, t in zip(rows, gt)], (1, top_k))
            for name, rows in _baselines(source, classes, mean_box).items()
        }
        if not np.isnan(pred["center_topk"]).all():  # the centre crop alone, with the same class guesses
            crops = [
                [(int(c), b) for c, b in zip(cs, boxes)] for cs, boxes in zip(classes, pred["center_topk"])
            ]
            out["center_topk"] = localisation_error([(g, *t) for g, t in zip(crops, gt)], (1, top_k))
        out["classification"] = dict(
            top1_err=100 * np.mean([c[0] != im.label for c, im in zip(classes, source.images)]),
            **{
                f"top{top_k}_err": 100 * np.mean([im.label not in c for c, im in zip(classes, source.images)])
            },
        )
    return out


def mean_training_box(meta) -> np.ndarray | None:
    """The mean (width, height) of the training boxes relative to their image, from the data the
    localisation net was trained on (its recorded config), the held-out part excluded."""
    cfg = (meta.train.config if meta.train else {}) or {}
    try:
        src = open_boxes(cfg["data"], cfg.get("data_root"), meta.classes, "skip")
        if not cfg.get("val_data"):
            src, _ = split_by_image(src, cfg.get("val_fraction", 0.05), cfg.get("seed", 0))
    except (VGGError, KeyError, TypeError, OSError):
        return None
    rel = (
        [(b[2] - b[0]) / im.size[0] for im in src.images for b in im.gt_boxes()],
        [(b[3] - b[1]) / im.size[1] for im in src.images for b in im.gt_boxes()],
    )
    return np.array([np.mean(rel[0]), np.mean(rel[1])]) if rel[0] else None


def evaluate_loc(checkpoint, data, out=None, force=False, gallery: int = 0, **options) -> dict:
    """Protocols 1 and 2 for one localisation net (see the module doc); with `out`, the raw boxes
    and the figures are saved for ``vggnet loc merge`` and ``vggnet report``."""
    opts = LocOptions(**options)
    if out is not None:
        claim_folder(
            out,
            {BOXES: "box predictions", RESULTS: "results", **({"gallery.png": "PNG"} if gallery else {})},
            force,
        )
    p = plan(checkpoint, data, opts)
    passed = run_pass(p, opts)
    mean_box = mean_training_box(p.meta)
    result = dict(
        kind="localisation",
        checkpoint=str(checkpoint),
        data=str(data),
        images=len(p.source),
        arch=p.meta.model.arch,
        head=p.meta.model.head,
        train_scale=list(p.meta.train.scale) if p.meta.train else None,
        finetune=(p.meta.train.config or {}).get("finetune") if p.meta.train else None,
        center_q=p.center_q,
        scales=p.scales if "dense" in opts.protocols else [],
        top_k=opts.top_k,
        classifier=opts.classifier or opts.posteriors,
    )
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        save_predictions(Path(out), p, passed, checkpoint, data)
    pred = dict(
        ids=[im.id for im in p.source.images],
        dir=str(out),
        center=passed["center"],
        center_topk=passed["center_topk"],
        class_scores=passed["scores"],
        **_flatten(passed["raw"]),
    )
    result.update(score(pred, p.source, opts.threshold, opts.top_k, mean_box))
    if out is not None:
        write_json(Path(out) / RESULTS, result)
        if gallery:
            result["gallery"] = str(
                draw_gallery(pred, p.source, opts.threshold, Path(out) / "gallery.png", gallery, opts.top_k)
            )
    return result


def _flatten(raw: list) -> dict:
    if not raw:
        return dict(
            boxes=np.zeros((0, 4)),
            box_scores=np.zeros(0),
            box_image=np.zeros(0, int),
            box_class=np.zeros(0, int),
        )
    return dict(
        boxes=np.concatenate([r[2] for r in raw]),
        box_scores=np.concatenate([r[3] for r in raw]),
        box_image=np.concatenate([[r[0]] * len(r[2]) for r in raw]),
        box_class=np.concatenate([[r[1]] * len(r[2]) for r in raw]),
    )


def fuse_predictions(preds: list[dict]) -> dict:
    """Several localisation nets' saved boxes as one set (Table 9, fusion): the union of their
    boxes, merged afterwards; the class scores (the classification system's) averaged."""
    first = preds[0]
    for p in preds[1:]:
        if list(p["ids"]) != list(first["ids"]) or p["classes"] != first["classes"]:
            raise VGGError(
                f"cannot fuse {p['dir']} with {first['dir']}: predictions for other images or classes"
            )
    fused = dict(
        first,
        dir="+".join(p["dir"] for p in preds),
        class_scores=np.mean([p["class_scores"] for p in preds], axis=0),
        center=first["center"] if len(preds) == 1 else np.full_like(first["center"], np.nan),
        center_topk=first["center_topk"] if len(preds) == 1 else np.full_like(first["center_topk"], np.nan),
    )
    for key in ("boxes", "box_scores", "box_image", "box_class"):
        fused[key] = np.concatenate([p[key] for p in preds])
    return fused


def tune_threshold(pred: dict, source, top_k: int = 5, grid=TUNE_GRID) -> tuple[float, list[dict]]:
    """The merging threshold with the lowest top-k localisation error on `source` (use held-out
    images, not the ones reported), and the error at every threshold tried (ties: the lower t)."""
    rows = [score(pred, source, t, top_k)["dense"] for t in grid]
    best = min(rows, key=lambda r: (r[f"top{top_k}_loc_err"], r["threshold"]))
    errors = [r[f"top{top_k}_loc_err"] for r in rows]
    if len(set(errors)) == 1:
        best["note"] = "every threshold gives the same error (one box per class: nothing to merge)"
    elif best["threshold"] in (grid[0], grid[-1]):
        best["note"] = (
            f"the best t is at the end of the grid ({grid[0]:g} ... {grid[-1]:g}); the optimum may lie beyond"
        )
    return best["threshold"], rows


def merge_runs(
    dirs,
    data,
    threshold: float | None = None,
    tune: bool = False,
    top_k: int = 5,
    data_root=None,
    on_bad_box: str = "fail",
    out=None,
    force=False,
) -> dict:
    """Protocol 2 from saved boxes of one or several localisation nets (no network run): with
    `tune`, the threshold is chosen on `data`; otherwise `threshold` is used."""
    check_threshold(threshold)
    if tune and threshold is not None:
        raise VGGError("give --threshold or --tune, not both")
    if out is not None:
        claim_folder(out, {RESULTS: "results"}, force)
    preds = [load_predictions(d) for d in dirs]
    if any(not len(p["boxes"]) for p in preds):
        raise VGGError("a folder has no protocol-2 boxes (it was evaluated with --protocol center only)")
    fused = fuse_predictions(preds)
    source = open_boxes(data, data_root, fused["classes"], on_bad_box)
    tried = None
    if tune:
        threshold, tried = tune_threshold(fused, source, top_k)
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    members = [
        json.loads((Path(p["dir"]) / RESULTS).read_text()) if (Path(p["dir"]) / RESULTS).is_file() else {}
        for p in preds
    ]
    result = dict(
        kind="localisation",
        fused_from=[p["dir"] for p in preds],
        data=str(data),
        images=len(source),
        top_k=top_k,
        scales=sorted({q for p in preds for q in p["scales"]}),
        tuned=tried,
        members=members,
    )
    if len(preds) == 1:  # one net re-merged: it keeps its own description (Tables 8 and 9)
        result.update(
            {
                k: members[0][k]
                for k in ("arch", "head", "finetune", "train_scale", "center_q")
                if k in members[0]
            }
        )
        result["fused_from"] = None
    result.update(score(fused, source, threshold, top_k))
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / RESULTS, result)
    return result


def draw_gallery(pred: dict, source, threshold: float, out_png, n: int = 16, top_k: int = 5) -> Path:
    """A contact sheet of `n` images (the first of each class in turn, so every class shows): the
    ground-truth boxes and the top-1 guess of protocol 2 (or protocol 1's box), green when right."""
    names = readable_names(source.classes)  # readable names for ImageNet wnids
    dense = len(pred["boxes"]) > 0
    guesses = _guesses(pred, threshold, 1) if dense else None
    order = sorted(
        range(len(source)),
        key=lambda i: (
            sum(source.images[j].label == source.images[i].label for j in range(i)),
            source.images[i].label,
        ),
    )[:n]
    items = []
    for i in order:
        im = source.images[i]
        if dense:
            cls, box = guesses[i][0] if guesses[i] else (im.label, np.zeros(4))
        else:
            cls, box = im.label, pred["center"][i]
        right = cls == im.label and box_hits(box, im.gt_boxes())
        items.append(
            dict(
                image=im.path,
                gt_boxes=im.gt_boxes(),
                gt_labels=[names[im.label]],
                pred_boxes=[box],
                pred_labels=[names[cls]],
                pred_correct=[right],
                caption=Path(im.path).name,
            )
        )
    what = "protocol 2, top-1 guess" if dense else "protocol 1, ground-truth class, centre crop"
    return contact_sheet(items, out_png, cols=min(4, len(items)), thumb=192, title=f"localisation: {what}")
