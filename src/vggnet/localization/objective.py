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
the ground-truth class, clipped to the image, correct when its IoU with a ground-truth box of that
class is >= 0.5 (``metrics.gt_class_box_misses``, the check of ``vggnet loc evaluate``);
``val_loc_err`` is the percentage of images wrong, ``val_mean_iou`` the mean of those IoUs and
``val_loss`` the Euclidean loss of the centre crops. The plateau schedule watches
``val_iou_loss`` = 1 - ``val_mean_iou`` (decision): a box layer that starts at random predicts
boxes that hit nothing, so the error stays at 100% for the first epochs while the boxes grow
towards the objects, and a rule that watched the error would divide the learning rate before
anything was learnt. The mean IoU moves from the first epoch and measures what the error counts;
the loss also moves, but was measured falling for epochs while the error and the mean IoU got
worse (docs/LOCALISATION.md), so it would keep the wrong net as ``best``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.boxfiles import BoxSource, split_by_image
from ..data.datasets import open_source
from ..engine.config import TrainConfig, load_config
from ..engine.objectives import register_objective
from ..errors import VGGError
from ..models.weights import read_meta
from .boxes import training_target
from .metrics import gt_class_box_ious, gt_class_box_misses


def open_boxes(spec, root=None, classes=None, on_bad: str = "fail") -> BoxSource:
    """A box CSV (``path,wnid,xmin,ymin,xmax,ymax``) or a folder of ILSVRC/VOC XML annotations
    (images under `root`, default the folder's parent): the data factory's box sources."""
    return open_source(spec, root, classes, boxes=True, on_bad=on_bad)


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
    """Loader hook for protocol 1: the target of the centre crop (for the validation loss), the
    ground-truth boxes of the image's class in the crop's pixel frame, unclipped (IoU is measured
    against the whole box), padded with NaN to a fixed count, and the rescaled image's extent in
    that frame (a predicted box is clipped to it, as `vggnet loc evaluate` clips to the image)."""

    def __init__(self, source: BoxSource, crop: int):
        super().__init__(source, crop)
        self.most = max(int((im.box_classes == im.label).sum()) for im in source.images)

    def __call__(self, index: int, drawn: dict) -> dict:
        out = super().__call__(index, drawn)
        boxes, classes, size, label = self.images[index]
        gt = boxes[classes == label]
        w, h = drawn["size"]
        frame = np.full((self.most, 4), np.nan, dtype=np.float32)
        frame[: len(gt), 0::2] = gt[:, 0::2] * (w / size[0]) - drawn["x"]
        frame[: len(gt), 1::2] = gt[:, 1::2] * (h / size[1]) - drawn["y"]
        extent = torch.tensor([-drawn["x"], -drawn["y"], w - drawn["x"], h - drawn["y"]], dtype=torch.float64)
        return dict(out, gt_boxes=torch.from_numpy(frame), extent=extent)


def params_to_boxes(params: torch.Tensor, crop: int) -> torch.Tensor:
    """(N, 4) (cx, cy, w, h) in crop units -> (N, 4) pixel boxes of the crop frame."""
    c, s = params[:, :2] * crop, params[:, 2:].clamp(min=0) * crop
    return torch.cat([c - s / 2, c + s / 2], dim=1)


class BoxRegression:
    """The objective of ``vggnet loc train`` (see the module doc)."""

    name = "boxes"
    monitor = "val_iou_loss"  # 1 - mean IoU: moves from the first epoch (see the module doc)
    train_fields = ("wrong", "boxed")
    val_fields = ("wrong", "sq_err", "iou")

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

    def train_counts(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        """The crops whose box misses their own target box, by protocol 1's check (one rule; the
        boxes are few, so the CPU computes it)."""
        pred = self.predicted(outputs, batch["box_class"])
        has = batch["has_box"].bool().cpu()
        boxes = params_to_boxes(pred.detach(), self._crop).cpu().numpy()
        targets = params_to_boxes(batch["box"], self._crop).cpu().numpy()[:, None]
        wrong = torch.from_numpy(gt_class_box_misses(boxes, list(targets))) & has
        return torch.stack([wrong.sum().to(torch.float64), has.sum().to(torch.float64)]).to(outputs.device)

    def val_counts(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        pred = self.predicted(outputs, batch["labels"])  # protocol 1: the ground-truth class's box
        boxes = params_to_boxes(pred.detach(), self._crop).cpu().numpy()
        gt = [g[~np.isnan(g).any(1)] for g in batch["gt_boxes"].cpu().numpy()]
        extents = batch["extent"].cpu().numpy()
        wrong = torch.tensor(float(gt_class_box_misses(boxes, gt, extents).sum()), dtype=torch.float64)
        iou = torch.tensor(float(gt_class_box_ious(boxes, gt, extents).sum()), dtype=torch.float64)
        has = batch["has_box"].to(pred.dtype)
        sq = (0.5 * (pred - batch["box"]).pow(2).sum(1) * has).sum().to(torch.float64).cpu()
        return torch.stack([wrong, sq, iou])

    def summary(self, counts: dict, n: float, prefix: str) -> dict:
        if prefix == "train":
            return {"train_loc_err": 100 * counts["wrong"] / max(counts["boxed"], 1)}
        iou = counts["iou"] / max(n, 1)
        return {
            "val_loc_err": 100 * counts["wrong"] / max(n, 1),
            "val_loss": counts["sq_err"] / max(n, 1),
            "val_mean_iou": iou,
            "val_iou_loss": 1.0 - iou,
        }

    def epoch_line(self, record: dict) -> str:
        return (
            f"train loc err {record['train_loc_err']:5.1f}%  val loc err (GT class, centre crop) "
            f"{record['val_loc_err']:5.1f}%  mean IoU {record['val_mean_iou']:.3f}  "
            f"val loss {record['val_loss']:.4f}"
        )


# App. A fine-tunes at lr 1e-3 (the Table 8/9 configs keep it); the default is higher because a box set of
# a few hundred images gives a few steps per epoch, where 1e-3 was measured to move nothing in 10 epochs
# (docs/LOCALISATION.md). Per-class regression (PCR) by default.
LOC_DEFAULTS = dict(objective="boxes", head="pcr", lr=0.03)


# What a box regressor takes from its classifier unless given (App. A: "trained at the same scale").
INHERITED_SETTINGS = ("arch", "width", "fc_dim", "crop", "batch_norm", "dropout", "scale")


def classifier_settings(init_from) -> dict:
    """The settings a box regressor takes from the classification net it starts from (App. A:
    "trained at the same scale"): its shape (arch, width, fc-dim, crop, batch norm, dropout) and
    its training scale S."""
    meta = read_meta(init_from)
    spec = meta.model
    shape = ("arch", "width", "fc_dim", "batch_norm", "dropout")
    settings = dict({k: getattr(spec, k) for k in shape}, crop=spec.crop_size)
    if meta.train:
        lo, hi = meta.train.scale
        settings["scale"] = str(lo) if lo == hi else f"{lo}:{hi}"
    return settings


def box_config(recipe=None, overrides: dict | None = None) -> TrainConfig:
    """The config of a box-regression run (``vggnet loc train``): the defaults <- LOC_DEFAULTS <-
    the settings of the classifier in ``init_from`` <- the recipe <- `overrides` (the flags; None
    means not given). So a recipe or a flag wins over what the classifier says, and a resumed run
    keeps its own config (``resume="auto"`` inherits: it may start the run)."""
    overrides = dict(overrides or {}, objective="boxes")
    base = dict(LOC_DEFAULTS)
    resuming = overrides.get("resume") is True  # "auto" may start the run: it inherits as a new one does
    init_from = None if resuming else load_config(recipe, overrides, base).init_from
    if init_from and Path(init_from).is_file():
        base.update(classifier_settings(init_from))
    return load_config(recipe, overrides, base)


@register_objective("boxes")
def _box_regression(cfg) -> BoxRegression:
    if cfg.head not in ("scr", "pcr"):
        raise VGGError("--objective boxes needs a box head: --head scr or pcr (App. A)")
    return BoxRegression(per_class=cfg.head != "scr", on_bad_box=cfg.on_bad_box).bind(cfg.crop)


__all__ = [
    "BoxRegression",
    "BoxTargets",
    "CenterBoxTargets",
    "open_boxes",
    "params_to_boxes",
    "LOC_DEFAULTS",
    "classifier_settings",
    "box_config",
]
