"""How an input image becomes a net's input (channel order, value range, mean and std), and the
conventions users meet. Below both the data pipeline (``Normalizer``, PCA colour shift) and the
weight files that carry it (``models/meta.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import fail, number_field, triple_field


@dataclass(frozen=True)
class Preprocessing:
    """How an input image becomes the net's input : channel order, value range (255 for
    ours and Caffe's, 1 for torchvision's), mean and std in those units; and the training set's
    RGB covariance eigen-pairs (0-255 units) for the PCA colour shift of §3.1, when known."""

    channel_order: str = "RGB"
    value_range: float = 255.0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    pca_eigval: tuple | None = None
    pca_eigvec: tuple | None = None

    @property
    def has_pca(self) -> bool:
        return self.pca_eigval is not None and self.pca_eigvec is not None

    def to_dict(self) -> dict:
        d = dict(
            channel_order=self.channel_order,
            value_range=self.value_range,
            mean=list(self.mean),
            std=list(self.std),
        )
        if self.has_pca:
            d.update(pca_eigval=list(self.pca_eigval), pca_eigvec=[list(r) for r in self.pca_eigvec])
        return d

    def same_input(self, other: "Preprocessing") -> bool:
        """Whether two nets expect the same input (the PCA pairs are a training matter only)."""
        return (self.channel_order, self.value_range, self.mean, self.std) == (
            other.channel_order,
            other.value_range,
            other.mean,
            other.std,
        )

    def describe(self) -> str:
        mean = "/".join(f"{v:g}" for v in self.mean)
        std = "" if self.std == (1.0, 1.0, 1.0) else " std " + "/".join(f"{v:g}" for v in self.std)
        return f"{self.channel_order}, 0-{self.value_range:g}, mean {mean}{std}"

    @classmethod
    def from_dict(cls, d, where="") -> "Preprocessing":
        if isinstance(d, Preprocessing):
            return d
        if not isinstance(d, dict):
            raise fail(where, f"'preprocessing' must be an object, got {type(d).__name__}")
        order = str(d.get("channel_order", "RGB")).upper()
        if order not in ("RGB", "BGR"):
            raise fail(where, f"field 'channel_order' must be RGB or BGR, got {d.get('channel_order')!r}")
        eigval, eigvec = d.get("pca_eigval"), d.get("pca_eigvec")
        if (eigval is None) != (eigvec is None):
            raise fail(where, "has only one of pca_eigval / pca_eigvec")
        if eigval is not None:
            eigval = triple_field(eigval, "pca_eigval", where)
            if not isinstance(eigvec, (list, tuple)) or len(eigvec) != 3:
                raise fail(where, "field 'pca_eigvec' must be a 3x3 matrix")
            eigvec = tuple(triple_field(row, "pca_eigvec", where) for row in eigvec)
        return cls(
            order,
            number_field(d.get("value_range", 255.0), "value_range", where, positive=True),
            triple_field(d.get("mean", [0.0, 0.0, 0.0]), "mean", where),
            triple_field(d.get("std", [1.0, 1.0, 1.0]), "std", where, positive=True),
            eigval,
            eigvec,
        )

    @classmethod
    def from_stats(cls, stats: dict) -> "Preprocessing":
        """Ours (§2.1): RGB, 0-255, the training set's mean RGB subtracted, nothing divided."""
        return cls.from_dict(
            dict(
                channel_order="RGB",
                value_range=255.0,
                mean=stats["mean_rgb"],
                pca_eigval=stats["pca_eigval"],
                pca_eigvec=stats["pca_eigvec"],
            ),
            "statistics",
        )


# Preprocessing conventions users meet: ours (RGB, 0-255, mean subtraction only, §2),
# torchvision's (RGB, 0-1, mean/std) and the original Caffe release's (BGR, 0-255, mean pixel).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
PRESETS = {
    "vggnet": Preprocessing("RGB", 255.0, IMAGENET_MEAN_RGB),
    "torchvision": Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": Preprocessing("BGR", 255.0, IMAGENET_MEAN_RGB[::-1]),
}
