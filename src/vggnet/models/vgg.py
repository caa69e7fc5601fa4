"""The VGG network of §2, one class for every configuration of Table 1.

Parameters are laid out exactly as torchvision's VGG (``features.N.*``, ``classifier.{0,3,6}.*``),
so checkpoint keys are the ones users already know. The fully connected head is stored as linear
layers and *reused* as convolutions in dense mode (§3.2): fc6 becomes a (crop/32)x(crop/32)
convolution over pool5 and fc7/fc8 become 1x1 convolutions, by a reshape of the same weights.
Dense evaluation is therefore a mode of the one model, not a second model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VGGError
from .arch import check_crop_size, check_model_args, resolve_arch
from .configs import LRN_PARAMS, parse_config
from .meta import ArchSpec

FC_NAMES = ("fc6", "fc7", "fc8")


class LocalResponseNorm(nn.LocalResponseNorm):
    """A-LRN's layer (§2.1), the same function and parameters as PyTorch's, computed as one 1x1
    convolution of the squares with a banded 0/1 matrix (the channel window) instead of a 3-D
    average pool: 1.6-2.5x faster on the CPU (benchmarks/lrn_speed.py), and it also takes bf16
    inputs, which the pool refuses on the CPU outside autocast. It runs in the input's precision:
    under autocast the result is bf16 anyway, and the rounding of the window sum stays within a
    few bf16 units of the output."""

    def __init__(self, channels: int, size: int, alpha: float, beta: float, k: float):
        super().__init__(size, alpha, beta, k)
        c = torch.arange(channels)
        offset = c[None, :] - c[:, None]  # input channel minus output channel
        window = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)
        # Not saved: checkpoints keep PyTorch's keys (the layer has no parameters).
        self.register_buffer("window", window.float()[:, :, None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.window.device.type, enabled=False):  # x's device; fx can trace it
            sums = F.conv2d(x * x, self.window.to(x.dtype))
            return x / (sums * (self.alpha / self.size) + self.k).pow(self.beta)


def _check_input(x: torch.Tensor, crop: int, dense: bool) -> None:
    """Refuse an input the net cannot take. A leaf for torch.fx (see below): symbolic tracing,
    which torchvision-style feature extractors use, records the call instead of evaluating it; a
    jit trace has concrete sizes and skips it."""
    if torch.jit.is_tracing():
        return
    if dense:
        if min(x.shape[-2:]) < crop:
            raise VGGError(f"dense() needs both image sides >= crop size {crop}, got {tuple(x.shape[-2:])}")
    elif tuple(x.shape[-2:]) != (crop, crop):
        raise VGGError(
            f"forward() takes {crop}x{crop} crops, got {tuple(x.shape[-2:])}; use dense() for other sizes"
        )


torch.fx.wrap("_check_input")


def scaled_width(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class VGG(nn.Module):
    """One net of Table 1. ``spec`` (an :class:`ArchSpec`) holds the arguments it was built from;
    ``head`` says what the last layer (fc8) predicts: class scores, or boxes (App. A: one box for
    all classes, ``scr``, or one per class, ``pcr``)."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        arch, width, fc_dim, dropout, batch_norm = (
            spec.arch,
            spec.width,
            spec.fc_dim,
            spec.dropout,
            spec.batch_norm,
        )
        self.arch = arch
        self.num_classes = spec.num_classes
        self.crop_size = check_crop_size(spec.crop_size)
        self.kernel = spec.crop_size // 32  # fc6's spatial extent as a convolution (7 at 224)
        self.dropout = dropout
        layers: list[nn.Module] = []
        # name -> (index of the module in `features`, index whose output is the named activation)
        self.layer_index: dict[str, int] = {}
        self.output_index: dict[str, int] = {}
        channels = 3
        for s, stage in enumerate(parse_config(arch), start=1):
            for layer in stage:
                if layer.is_conv:
                    out = scaled_width(layer.out_channels, width)
                    self.layer_index[layer.name] = len(layers)
                    layers.append(nn.Conv2d(channels, out, layer.kernel, padding=layer.kernel // 2))
                    if batch_norm:
                        layers.append(nn.BatchNorm2d(out))
                    layers.append(nn.ReLU(inplace=True))
                    channels = out
                else:
                    layers.append(LocalResponseNorm(channels, **LRN_PARAMS))
                self.output_index[layer.name] = len(layers) - 1  # conv names: after ReLU (Caffe blobs)
            # Floor mode (torchvision's). Caffe's ceil mode was measured too: the two agree on
            # crop-sized inputs, and at small scales ceil mode's partial windows hurt dense
            # evaluation badly (docs/RESULTS.md), so a dense pass ignores the < 32 pixel remainder.
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            self.output_index[f"pool{s}"] = len(layers) - 1
        self.features = nn.Sequential(*layers)
        self.pool5_channels = channels
        # Dropout acts on the outputs of fc6 and fc7 after their ReLU (§3.1).
        self.classifier = nn.Sequential(
            nn.Linear(channels * self.kernel * self.kernel, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_dim, self.spec.outputs),
        )

    # -- layers by their paper names -------------------------------------------------------------
    def weight_layers(self) -> dict[str, nn.Module]:
        """The weight layers by paper name: conv1_1 ... conv5_k, fc6, fc7, fc8 (in order)."""
        out = {name: self.features[i] for name, i in self.layer_index.items()}
        out.update(zip(FC_NAMES, (self.classifier[0], self.classifier[3], self.classifier[6])))
        return out

    def feature_names(self) -> list[str]:
        """Every name :meth:`extract` accepts."""
        return list(self.output_index) + list(FC_NAMES)

    # -- forward passes ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (N, outputs) for a batch of crop-sized images: class scores, or boxes."""
        _check_input(x, self.crop_size, False)
        return self.classifier(torch.flatten(self.features(x), 1))

    def _fc_as_conv(self, index: int, x: torch.Tensor) -> torch.Tensor:
        fc = self.classifier[index]
        k = self.kernel if index == 0 else 1
        weight = fc.weight.view(fc.out_features, fc.in_features // (k * k), k, k)
        return F.conv2d(x, weight, fc.bias)

    def _head(self, pool5: torch.Tensor, wanted=("fc8",)):
        """fc6, fc7, fc8 as convolutions over a pool5 map (§3.2), stopping after the last of
        `wanted`; yields (name, activation) for each layer passed: fc6/fc7 after ReLU and dropout
        (dropout is the identity in eval mode), fc8 raw."""
        x, last = pool5, max(FC_NAMES.index(n) for n in wanted)
        for i, name in enumerate(FC_NAMES[: last + 1]):
            x = self._fc_as_conv(3 * i, x)
            if name != "fc8":
                x = F.dropout(F.relu(x), self.dropout, self.training)
            yield name, x

    def dense_head(self, pool5: torch.Tensor, upto: str = "fc8") -> torch.Tensor:
        """Apply fc6..`upto` as convolutions to a pool5 map (§3.2)."""
        *_, (_, out) = self._head(pool5, (upto,))  # the last layer's output
        return out

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """The fully-convolutional net's output map (N, outputs, h, w) on any image with both sides
        >= crop_size: class scores (§3.2), or boxes for a box head (App. A: one per location);
        h = floor(H/32) - crop/32 + 1, likewise w."""
        _check_input(x, self.crop_size, True)
        return self.dense_head(self.features(x))

    def extract(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """Named intermediate activations, e.g. ``extract(x, ["conv5_3", "fc7"])``.

        Conv names give the activation after its ReLU, ``poolN`` after the pooling, fc6/fc7 after
        their ReLU, fc8 the raw class scores. On a crop-sized input the fc outputs are (N, D)
        vectors; on larger inputs they are dense (N, D, h, w) maps.
        """
        names = [names] if isinstance(names, str) else list(names)
        valid = self.feature_names()
        for n in names:
            if n not in valid:
                raise VGGError(f"unknown layer {n!r}; valid: {', '.join(valid)}")
        wanted = set(names)
        out: dict[str, torch.Tensor] = {}
        last = max([self.output_index[n] for n in names if n in self.output_index], default=-1)
        need_fc = any(n in FC_NAMES for n in names)
        stop = len(self.features) - 1 if need_fc else last
        index_to_name = {i: n for n, i in self.output_index.items()}
        for i, module in enumerate(self.features[: stop + 1]):
            x = module(x)
            if index_to_name.get(i) in wanted:
                out[index_to_name[i]] = x  # no in-place op follows a named output
        if need_fc:
            crop = x.shape[-2:] == (self.kernel, self.kernel)
            for name, y in self._head(x, [n for n in names if n in FC_NAMES]):
                if name in wanted:
                    out[name] = torch.flatten(y, 1) if crop else y
        return {n: out[n] for n in names}


def model_from_spec(spec: ArchSpec) -> VGG:
    """The net `spec` describes, its arguments checked (a torchvision name such as ``vgg16_bn``
    resolved to its letter and batch norm); PyTorch's default initialisation."""
    letter, bn = resolve_arch(spec.arch)
    check_model_args(
        letter, spec.num_classes, spec.width, spec.fc_dim, spec.crop_size, spec.dropout, spec.head
    )
    return VGG(spec.replace(arch=letter, batch_norm=spec.batch_norm if bn is None else bn))
