"""What a weight file says about its weights, as typed objects with one reader and one writer.

A weight file is a safetensors file whose header holds, under the key ``vggnet``, one JSON
document (STYLE: weights carry their metadata):

- ``model``: the architecture (:class:`ArchSpec`: the Table 1 configuration, class count, width,
  FC size, crop size, dropout, batch norm, and the head: class scores, or a box regressor, App. A);
- ``classes``: the class names in output order;
- ``preprocessing``: how the weights expect their input (:class:`Preprocessing`);
- ``train``: how they were trained (:class:`TrainInfo`: scale S, crop, recipe, resolved config,
  warm start), for the test scales of §4.1/§4.2;
- ``source`` (imported weights), ``val`` (validation result), ``train_state`` (resumable runs).

Everything read from a file is checked here, so a hand-edited or foreign header is refused with a
message naming the file and the field, never passed on to ``create_model`` unchecked. Files of
the first format version (architecture under ``arch`` with the letter as ``name``) are read too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..data.preprocessing import PRESETS, Preprocessing
from ..data.transforms import MAX_SIDE
from ..errors import VGGError
from ..fields import fail, int_field, number_field
from ..fileio import loads_json
from .arch import HEADS, check_model_args
from .configs import TABLE1
from .transforms import create_transform

FORMAT = "vggnet-weights/1"
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class ArchSpec:
    """The arguments of ``create_model``: everything needed to rebuild a net of Table 1."""

    arch: str = "D"  # the Table 1 configuration: A, A-LRN, B, C, D, E, B-5x5
    num_classes: int = 1000
    width: float = 1.0
    fc_dim: int = 4096
    crop_size: int = 224
    dropout: float = 0.5
    batch_norm: bool = False
    head: str = "classifier"

    @property
    def outputs(self) -> int:
        """Width of the last layer: class scores, one box (SCR) or one box per class (PCR)."""
        return {"classifier": self.num_classes, "scr": 4, "pcr": 4 * self.num_classes}[self.head]

    def kwargs(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "ArchSpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d, where="") -> "ArchSpec":
        if not isinstance(d, dict):
            raise fail(where, f"'model' must be an object, got {type(d).__name__}")
        d = dict(d)
        if "name" in d and "arch" not in d:  # first format version
            d["arch"] = d.pop("name")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise fail(where, f"'model' has unknown fields {unknown}")
        arch = d.get("arch")
        if arch not in TABLE1:
            raise fail(where, f"names an unknown configuration {arch!r}; valid: {', '.join(TABLE1)}")
        spec = cls(
            arch=arch,
            num_classes=int_field(d.get("num_classes", 1000), "num_classes", where, 1, MAX_CLASSES),
            width=number_field(d.get("width", 1.0), "width", where, positive=True),
            fc_dim=int_field(d.get("fc_dim", 4096), "fc_dim", where, 1, 65_536),
            crop_size=int_field(d.get("crop_size", 224), "crop_size", where, 32, 4096),
            dropout=number_field(d.get("dropout", 0.5), "dropout", where),
            batch_norm=d.get("batch_norm", False),
            head=d.get("head", "classifier"),
        )
        if spec.width > 16:
            raise fail(where, f"field 'width' must be <= 16, got {spec.width}")
        if not isinstance(spec.batch_norm, bool):
            raise fail(where, f"field 'batch_norm' must be true or false, got {spec.batch_norm!r}")
        if spec.head not in HEADS:
            raise fail(where, f"names an unknown head {spec.head!r}; valid: {', '.join(HEADS)}")
        try:  # every create_model argument checked here, so the error names the file
            check_model_args(
                spec.arch, spec.num_classes, spec.width, spec.fc_dim, spec.crop_size, spec.dropout, spec.head
            )
        except VGGError as e:
            raise fail(where, f"'model': {e}") from None
        return spec


@dataclass(frozen=True)
class TrainInfo:
    """How the weights were trained: what the test scales of §4.1/§4.2 are derived from."""

    scale: tuple[int, int]  # (Smin, Smax); Smin == Smax for single-scale training
    crop: int
    val_scale: int | None = None
    recipe: str = ""
    config: dict = field(default_factory=dict)
    warm_start: dict | None = None
    objective: str = "classification"
    precision: str = ""  # what the device policy chose, and why: "bf16 autocast (auto: CPU has amx_bf16)"

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), scale=list(self.scale))

    @classmethod
    def from_dict(cls, d, where="") -> "TrainInfo":
        if not isinstance(d, dict):
            raise fail(where, f"'train' must be an object, got {type(d).__name__}")
        scale = d.get("scale")
        if not isinstance(scale, (list, tuple)) or len(scale) != 2:
            raise fail(where, f"field 'train.scale' must be [Smin, Smax], got {scale!r}")
        # No run trains or validates at a larger S or Q than MAX_SIDE.
        lo, hi = (int_field(v, "train.scale", where, 1, MAX_SIDE) for v in scale)
        val_scale = d.get("val_scale")
        return cls(
            (lo, hi),
            int_field(d.get("crop", 224), "train.crop", where, 1, MAX_SIDE),
            None if val_scale is None else int_field(val_scale, "train.val_scale", where, 1, MAX_SIDE),
            str(d.get("recipe") or ""),
            d.get("config") if isinstance(d.get("config"), dict) else {},
            d.get("warm_start") if isinstance(d.get("warm_start"), dict) else None,
            str(d.get("objective") or "classification"),
            str(d.get("precision") or ""),
        )


@dataclass
class WeightsMeta:
    """Everything a weight file says besides its tensors."""

    model: ArchSpec
    classes: list[str]
    preprocessing: Preprocessing = PRESETS["vggnet"]
    train: TrainInfo | None = None
    source: dict | None = None
    val: dict | None = None
    train_state: dict | None = None

    def __post_init__(self):
        if len(self.classes) != self.model.num_classes:
            raise VGGError(
                f"metadata lists {len(self.classes)} classes for a net with {self.model.num_classes}"
            )
        if len(set(self.classes)) != len(self.classes):
            twice = next(c for i, c in enumerate(self.classes) if c in self.classes[:i])
            raise VGGError(
                f"class names must differ, but {twice!r} names two outputs (images of that class "
                f"would be scored against one of them only)"
            )

    def replace(self, **changes) -> "WeightsMeta":
        return dataclasses.replace(self, **changes)

    def transforms(self, scale: int | None = None, crop: bool = True):
        """The net's test-time preprocessing as a ready transform (torchvision's ``weights.transforms()``):
        image -> normalised tensor at its test scale and crop; see :func:`vggnet.models.create_transform`."""
        return create_transform(self, scale, crop)

    def to_json(self) -> str:
        d = dict(
            format=FORMAT,
            model=self.model.kwargs(),
            classes=list(self.classes),
            preprocessing=self.preprocessing.to_dict(),
        )
        for name in ("train", "source", "val", "train_state"):
            value = getattr(self, name)
            if value is not None:
                d[name] = value.to_dict() if hasattr(value, "to_dict") else value
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, where="") -> "WeightsMeta":
        try:
            d = loads_json(text)
        except ValueError as e:
            raise fail(where, f"is not valid JSON ({e})") from None
        return cls.from_dict(d, where)

    @classmethod
    def from_dict(cls, d, where="", model: ArchSpec | None = None) -> "WeightsMeta":
        """Read and check a metadata document; `model` (the net's own spec) wins over the file's."""
        if not isinstance(d, dict):
            raise fail(where, f"must be a JSON object, got {type(d).__name__}")
        if model is None:
            if "model" not in d and "arch" not in d:
                raise fail(where, "has no architecture ('model')")
            model = ArchSpec.from_dict(d.get("model", d.get("arch")), where)
        classes = d.get("classes")
        if classes is None:
            classes = [str(i) for i in range(model.num_classes)]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise fail(where, "field 'classes' must be a list of names")
        if len(classes) != model.num_classes:
            raise fail(where, f"lists {len(classes)} classes for a net with {model.num_classes}")
        if len(set(classes)) != len(classes):
            raise fail(where, "field 'classes' names one class twice")
        train = d.get("train")
        return cls(
            model,
            classes,
            Preprocessing.from_dict(d.get("preprocessing") or {}, where),
            TrainInfo.from_dict(train, where) if train else None,
            d.get("source") if isinstance(d.get("source"), dict) else None,
            d.get("val") if isinstance(d.get("val"), dict) else None,
            d.get("train_state") if isinstance(d.get("train_state"), dict) else None,
        )
