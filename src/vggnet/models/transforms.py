"""The preprocessing of a loaded net as a ready transform, as torchvision's ``weights.transforms()``
and timm's ``create_transform`` give one:

    net, meta = load_model("best.safetensors")
    transform = create_transform(meta)          # or meta.transforms()
    x = transform(Image.open("cat.png"))        # (3, crop, crop) float, the net's own normalisation
    probs = net.eval()(x[None]).softmax(1)

It does what ``vggnet evaluate``'s centre-crop protocol does to an image (§3.2, §4.1): the whole
image isotropically rescaled so that its smallest side is the test scale Q (by default the net's
§4.1 scale: its training S, or the middle of a jittered range), the centre crop x crop taken, and
the weights' recorded preprocessing applied (channel order, value range, mean, std) -- the same
functions, so the tensors are equal. A file path is decoded as evaluation decodes it (a large JPEG
at a reduced size no smaller than Q, DCT scaling); a PIL image or a tensor is taken as given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.images import _to_rgb, load_rgb
from ..data.transforms import MAX_SIDE, Normalizer, Scale, center_crop, default_scales, rescale
from ..errors import VGGError


class EvalTransform:
    """image (PIL image, uint8 (3, H, W) RGB tensor, or a file path) -> normalised (3, crop, crop)
    float tensor; ``crop=None`` keeps the whole rescaled image (the input of ``net.dense``)."""

    def __init__(self, preprocessing, scale: int, crop: int | None):
        if crop is not None and scale < crop:
            raise VGGError(f"test scale Q={scale} is smaller than the crop size {crop}")
        if not 1 <= scale <= MAX_SIDE:
            raise VGGError(f"test scale Q must be between 1 and {MAX_SIDE}, got {scale}")
        self.scale, self.crop, self.preprocessing = scale, crop, preprocessing
        self.normalizer = Normalizer(preprocessing)

    def picture(self, image) -> Image.Image:
        if isinstance(image, (str, Path)):
            return load_rgb(image, min_side=self.scale)  # decoded as evaluation decodes it
        if isinstance(image, torch.Tensor):
            if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
                raise VGGError(
                    f"a tensor image must be uint8 RGB (3, H, W), got {image.dtype} {tuple(image.shape)}"
                )
            return Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), "RGB")
        if isinstance(image, Image.Image):
            return _to_rgb(image)
        raise VGGError(
            f"the transform takes a PIL image, a uint8 (3, H, W) tensor or a path, got {type(image).__name__}"
        )

    def __call__(self, image) -> torch.Tensor:
        scaled = np.array(rescale(self.picture(image), self.scale), dtype=np.uint8)
        x = torch.from_numpy(scaled).permute(2, 0, 1)
        if self.crop is not None:
            x = center_crop(x, self.crop)
        with torch.no_grad():
            return self.normalizer(x[None])[0]

    def __repr__(self) -> str:
        crop = f", centre crop {self.crop}" if self.crop is not None else ", whole image"
        return f"EvalTransform(smallest side {self.scale}{crop}, {self.preprocessing.describe()})"


def create_transform(meta, scale: int | None = None, crop: bool = True) -> EvalTransform:
    """The transform of the weights described by `meta` (a :class:`WeightsMeta`, as ``load_model``
    returns): test scale `scale` (default: §4.1's, from how the net was trained), centre crop of the
    net's crop size unless ``crop=False``."""
    size = meta.model.crop_size
    train = Scale(*meta.train.scale) if meta.train else None
    q = scale if scale is not None else default_scales(train, size)[0]
    return EvalTransform(meta.preprocessing, int(q), size if crop else None)
