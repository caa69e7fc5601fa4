"""Box regression (Appendix A) as an objective of the one training loop.

The net is a Table 1 net whose last layer predicts a box instead of class scores: 4 numbers
shared by all classes (single-class regression, SCR) or 4 per class (per-class regression, PCR).
A box is (cx, cy, w, h) relative to the window that saw it, in units of the crop (see
``boxes.py``). Training is the classifier's (§3.1) with the soft-max loss replaced by a Euclidean
loss, ``1/2 ||predicted - target||^2`` per crop (the Euclidean loss layer of the paper's toolbox);
for PCR only the 4 outputs of the target box's class are penalised, so the other classes' outputs
get no gradient. The target of a training crop is the box of its object, the visible one of
largest area (decision: the paper does not say which of several); a crop that shows no object
(possible with small boxes and large S) has no target and contributes nothing.

Validation is test protocol 1 (the paper's Table 8): the centre crop at Q, the box predicted for
the ground-truth class, correct when its IoU with a ground-truth box of that class is >= 0.5;
``val_loc_err`` is the percentage of images wrong, and the plateau schedule watches it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..engine.config import TrainConfig, load_config
from ..engine.objectives import register_objective
from ..errors import VGGError
from ..models.weights import read_meta
from .boxdata import BoxSource, read_box_csv, read_voc_annotations, split_by_image
from .boxes import training_target

IOU_THRESHOLD = 0.5  # the ILSVRC rule (Appendix A)


def open_boxes(spec, root=None, classes=None, on_bad: str = "fail") -> BoxSource:
    """A box CSV (``path,wnid,xmin,ymin,xmax,ymax``) or a folder of ILSVRC/VOC XML annotations
    (images under `root`, default the folder's parent)."""
    spec = Path(spec)
    if spec.is_dir():
        return read_voc_annotations(spec, Path(root) if root else spec.parent, classes=classes, on_bad=on_bad)
    if spec.is_file():
        return read_box_csv(spec, root=root, classes=classes, on_bad=on_bad)
    raise VGGError(f"box data not found: {spec} (give a box CSV or a folder of XML annotations)")


class BoxTargets:
    """Loader hook: a training crop's regression target (params (4,), class, whether any box is
    visible), from the image's boxes and how the crop was drawn."""

    def __init__(self, source: BoxSource, crop: int):
        self.images = [(im.boxes, im.box_classes, im.size, im.label) for im in source.images]
        self.crop = crop

    def __call__(self, index: int, drawn: dict) -> dict:
        boxes, classes, size, label = self.images[index]
        target = training_target(boxes, classes, size, drawn, self.crop)
        if target is None:
            return dict(box=torch.zeros(4), box_class=int(label), has_box=0)
        params, cls = target
        return dict(box=torch.tensor(params, dtype=torch.float32), box_class=cls, has_box=1)


class CenterBoxTargets(BoxTargets):
    """Loader hook for protocol 1: the target of the centre crop (for the validation loss) and
    the ground-truth boxes of the image's class in the crop's pixel frame, unclipped (IoU is
    measured against the whole box), padded with NaN to a fixed count."""

    def __init__(self, source: BoxSource, crop: int):
        super().__init__(source, crop)
        self.most = max(int((im.box_classes == im.label).sum()) for im in source.images)

    def __call__(self, index: int, drawn: dict) -> dict:
        out = super().__call__(index, drawn)
        boxes, classes, size, label = self.images[index]
        gt = boxes[classes == label]
        w, h = drawn["size"]
        frame = np.full((self.most, 4), np.nan, dtype=np.float32)
        frame[:len(gt), 0::2] = gt[:, 0::2] * (w / size[0]) - drawn["x"]
        frame[:len(gt), 1::2] = gt[:, 1::2] * (h / size[1]) - drawn["y"]
        return dict(out, gt_boxes=torch.from_numpy(frame))


def params_to_boxes(params: torch.Tensor, crop: int) -> torch.Tensor:
    """(N, 4) (cx, cy, w, h) in crop units -> (N, 4) pixel boxes of the crop frame."""
    c, s = params[:, :2] * crop, params[:, 2:].clamp(min=0) * crop
    return torch.cat([c - s / 2, c + s / 2], dim=1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (N, 4) boxes with (N, K, 4) boxes -> (N, K); NaN boxes (padding) give 0."""
    a = a[:, None]
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1) + (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1) - inter
    return torch.nan_to_num(inter / union.clamp(min=1e-9), nan=0.0)


class BoxRegression:
    """The objective of ``vggnet loc train`` (see the module doc)."""

    name = "boxes"
    monitor = "val_loc_err"
    train_fields = ("wrong", "boxed")
    val_fields = ("wrong", "sq_err")

    def __init__(self, per_class: bool = True, on_bad_box: str = "fail"):
        self.per_class, self.on_bad_box = per_class, on_bad_box
        self.head = "pcr" if per_class else "scr"
        self.sources: dict[str, BoxSource] = {}

    # -- data ------------------------------------------------------------------------------------
    def open_data(self, cfg):
        classes = None
        if cfg.init_from and Path(cfg.init_from).is_file():
            classes = read_meta(cfg.init_from).classes  # the classifier's class order (PCR outputs)
        train = open_boxes(cfg.data, cfg.data_root, classes, self.on_bad_box)
        if cfg.val_data:
            val = open_boxes(cfg.val_data, cfg.data_root, train.classes, self.on_bad_box)
        else:
            train, val = split_by_image(train, cfg.val_fraction, cfg.seed)
        self.sources = {"train": train, "val": val}
        return train.as_source(), val.as_source()

    def _boxes(self, source) -> BoxSource:
        for box_source in self.sources.values():
            if [im.id for im in box_source.images] == list(source.ids):
                return box_source
        raise VGGError("box targets asked for a data set the objective did not open")

    def check_source(self, source) -> None:
        if len(source) == 0:
            raise VGGError("no images with boxes to train on")

    def train_targets(self, source):
        return BoxTargets(self._boxes(source), self._crop)

    def val_targets(self, source, crop: int):
        return CenterBoxTargets(self._boxes(source), crop)

    def bind(self, crop: int) -> "BoxRegression":
        self._crop = crop
        return self

    # -- loss and figures -----------------------------------------------------------------------
    def predicted(self, outputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The 4 outputs of each crop's class (PCR) or the shared 4 (SCR), float32."""
        outputs = outputs.float()
        if not self.per_class:
            return outputs
        return outputs.view(len(outputs), -1, 4)[torch.arange(len(outputs), device=outputs.device), classes]

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        pred = self.predicted(outputs, batch["box_class"])
        per_crop = 0.5 * (pred - batch["box"]).pow(2).sum(1)
        return (per_crop * batch["has_box"].to(per_crop.dtype)).sum()

    def _wrong(self, pred: torch.Tensor, gt: torch.Tensor, crop: int) -> torch.Tensor:
        return (box_iou(params_to_boxes(pred.detach(), crop), gt).max(1).values < IOU_THRESHOLD).to(torch.float64)

    def train_counts(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        pred = self.predicted(outputs, batch["box_class"])
        has = batch["has_box"].bool()
        target = params_to_boxes(batch["box"], self._crop)[:, None]
        wrong = (self._wrong(pred, target, self._crop) * has).sum()
        return torch.stack([wrong, has.sum().to(torch.float64)])

    def val_counts(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        crop = self._crop
        pred = self.predicted(outputs, batch["labels"])  # protocol 1: the ground-truth class's box
        wrong = self._wrong(pred, batch["gt_boxes"], crop).sum()
        has = batch["has_box"].to(pred.dtype)
        sq = (0.5 * (pred - batch["box"]).pow(2).sum(1) * has).sum().to(torch.float64)
        return torch.stack([wrong, sq]).cpu()

    def summary(self, counts: dict, n: float, prefix: str) -> dict:
        if prefix == "train":
            return {"train_loc_err": 100 * counts["wrong"] / max(counts["boxed"], 1)}
        return {"val_loc_err": 100 * counts["wrong"] / max(n, 1), "val_loss": counts["sq_err"] / max(n, 1)}

    def epoch_line(self, record: dict) -> str:
        return (f"train loc err {record['train_loc_err']:5.1f}%  val loc err (GT class, centre crop) "
                f"{record['val_loc_err']:5.1f}%  val loss {record['val_loss']:.4f}")


# App. A: a box regressor is fine-tuned from a classification net at lr 1e-3, per-class (PCR) by default.
LOC_DEFAULTS = dict(objective="boxes", head="pcr", lr=1e-3)


def classifier_settings(init_from) -> dict:
    """The settings a box regressor takes from the classification net it starts from (App. A:
    "trained at the same scale"): its shape (arch, width, fc-dim, crop, batch norm, dropout) and
    its training scale S."""
    meta = read_meta(init_from)
    spec = meta.model
    settings = dict(arch=spec.arch, width=spec.width, fc_dim=spec.fc_dim, crop=spec.crop_size,
                    batch_norm=spec.batch_norm, dropout=spec.dropout)
    if meta.train:
        lo, hi = meta.train.scale
        settings["scale"] = str(lo) if lo == hi else f"{lo}:{hi}"
    return settings


def box_config(recipe=None, overrides: dict | None = None) -> TrainConfig:
    """The config of a box-regression run (``vggnet loc train``): the defaults <- LOC_DEFAULTS <-
    the settings of the classifier in ``init_from`` <- the recipe <- `overrides` (the flags; None
    means not given). So a recipe or a flag wins over what the classifier says, and a resumed run
    keeps its own config."""
    overrides = dict(overrides or {}, objective="boxes")
    base = dict(LOC_DEFAULTS)
    init_from = None if overrides.get("resume") else load_config(recipe, overrides, base).init_from
    if init_from and Path(init_from).is_file():
        base.update(classifier_settings(init_from))
    return load_config(recipe, overrides, base)


@register_objective("boxes")
def _box_regression(cfg) -> BoxRegression:
    if cfg.head not in ("scr", "pcr"):
        raise VGGError("--objective boxes needs a box head: --head scr or pcr (App. A)")
    return BoxRegression(per_class=cfg.head != "scr", on_bad_box=cfg.on_bad_box).bind(cfg.crop)


__all__ = ["BoxRegression", "BoxTargets", "CenterBoxTargets", "open_boxes", "box_iou", "params_to_boxes", "LOC_DEFAULTS",
           "classifier_settings", "box_config"]
