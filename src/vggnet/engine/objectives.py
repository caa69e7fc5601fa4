"""What a net is trained to predict: the loss, the figures counted while training and validating,
and which validation figure the plateau schedule watches.

One training loop (``engine/train.py``) serves every objective: classification (§3.1: soft-max
cross-entropy, top-1/top-5 error) here, and Appendix A's box regression (Euclidean loss,
localisation error) in ``vggnet.localization``. An objective differs from another in its head,
its loss, its figures and the targets its items carry; not in how an epoch runs, checkpoints,
resumes or is distributed.

The interface, for a new objective:

- ``name``; ``head`` (the :class:`ArchSpec` head the net is built with); ``monitor``: the key of
  the validation summary the plateau schedule watches (lower is better).
- ``open_data(cfg)``: the (training, validation) sources (default: image folders or label files);
- ``check_source(source)``: refuse training data the objective cannot learn from;
- ``train_targets(source)`` / ``val_targets(source, crop)``: None, or a picklable
  ``f(index, drawn) -> dict`` adding target fields to a loader item (``drawn``: how the image was
  rescaled, cropped and flipped);
- ``loss(outputs, batch)``: the loss *summed* over the batch (the loop divides by the batch size);
- ``train_counts`` / ``val_counts(outputs, batch)``: tensors of summed counts, one per name in
  ``train_fields`` / ``val_fields``;
- ``summary(counts, n, prefix)``: those counts as the figures of the log (percentages);
- ``epoch_line(record)``: the figures of one epoch, for the console.

An objective plugs in by registering a factory under its name (``register_objective``): the
loop reads the table and never names a plug-in, so a new objective is one new file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import VGGError, unknown
from ..eval.metrics import topk_wrong
from .run import open_data

OBJECTIVES: dict = {}  # name -> factory(cfg) -> objective


def register_objective(name: str):
    """Class or function decorator: `factory(cfg)` builds the objective `name` for a run's config."""

    def add(factory):
        OBJECTIVES[name] = factory
        return factory

    return add


def objective_for(cfg):
    """The objective a config asks for (``objective``), built by its registered factory, which
    checks the config's ``head`` against it. Objectives outside the engine register when their
    package is imported (box regression: ``vggnet.localization``)."""
    if cfg.objective not in OBJECTIVES:
        raise unknown("objective", cfg.objective, sorted(OBJECTIVES))
    return OBJECTIVES[cfg.objective](cfg)


class Classification:
    """§3.1: multinomial logistic regression; top-1 error while training, top-1/top-5 on the
    validation centre crops (§4.1)."""

    name = "classification"
    head = "classifier"
    monitor = "val_top1_err"
    train_fields = ("wrong1",)
    val_fields = ("wrong1", "wrong5")

    def open_data(self, cfg):
        return open_data(cfg)

    def check_source(self, source) -> None:
        """A classifier needs two classes at least (one class trains to loss 0 and learns nothing)."""
        if len(source.classes) < 2:
            raise VGGError(
                f"{source.root}: {len(source.classes)} class ({', '.join(source.classes)}); "
                f"classification needs at least 2"
            )

    def train_targets(self, source):
        return None

    def val_targets(self, source, crop: int):
        return None

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), batch["labels"], reduction="sum")

    def train_counts(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return (outputs.detach().argmax(1) != batch["labels"]).sum().reshape(1)

    def val_counts(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        wrong = topk_wrong(outputs.float(), batch["labels"], (1, 5))
        return torch.tensor([wrong[1], wrong[5]], dtype=torch.float64)

    def summary(self, counts: dict, n: float, prefix: str) -> dict:
        n = max(n, 1)
        out = {f"{prefix}_top1_err": 100 * counts["wrong1"] / n}
        if "wrong5" in counts:
            out[f"{prefix}_top5_err"] = 100 * counts["wrong5"] / n
        return out

    def epoch_line(self, record: dict) -> str:
        return (
            f"train top-1 {record['train_top1_err']:5.1f}%  val top-1 {record['val_top1_err']:5.1f}%  "
            f"top-5 {record['val_top5_err']:5.1f}%"
        )


@register_objective("classification")
def _classification(cfg) -> Classification:
    if cfg.head not in ("auto", "classifier"):
        raise VGGError(f"--head {cfg.head} is a box head; use it with --objective boxes (vggnet loc train)")
    return Classification()
