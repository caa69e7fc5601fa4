"""Table 1 of the paper as data.

Each configuration is five stages (one per max-pool); each stage is a string of layer tokens in
the paper's own notation: ``conv3-64`` is a 3x3 convolution with 64 output channels, ``conv1-256``
a 1x1 convolution (config C), ``conv5-128`` a 5x5 one (the "shallow" net of §4.1) and ``LRN`` a
local response normalisation layer (A-LRN). Adding a configuration is adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE1: dict[str, tuple[str, ...]] = {
    "A": ("conv3-64", "conv3-128", "conv3-256 conv3-256", "conv3-512 conv3-512", "conv3-512 conv3-512"),
    "A-LRN": (
        "conv3-64 LRN",
        "conv3-128",
        "conv3-256 conv3-256",
        "conv3-512 conv3-512",
        "conv3-512 conv3-512",
    ),
    "B": (
        "conv3-64 conv3-64",
        "conv3-128 conv3-128",
        "conv3-256 conv3-256",
        "conv3-512 conv3-512",
        "conv3-512 conv3-512",
    ),
    "C": (
        "conv3-64 conv3-64",
        "conv3-128 conv3-128",
        "conv3-256 conv3-256 conv1-256",
        "conv3-512 conv3-512 conv1-512",
        "conv3-512 conv3-512 conv1-512",
    ),
    "D": (
        "conv3-64 conv3-64",
        "conv3-128 conv3-128",
        "conv3-256 conv3-256 conv3-256",
        "conv3-512 conv3-512 conv3-512",
        "conv3-512 conv3-512 conv3-512",
    ),
    "E": (
        "conv3-64 conv3-64",
        "conv3-128 conv3-128",
        "conv3-256 conv3-256 conv3-256 conv3-256",
        "conv3-512 conv3-512 conv3-512 conv3-512",
        "conv3-512 conv3-512 conv3-512 conv3-512",
    ),
    # §4.1: net B with each pair of 3x3 convs replaced by one 5x5 conv (same receptive field).
    "B-5x5": ("conv5-64", "conv5-128", "conv5-256", "conv5-512", "conv5-512"),
}

# Which torchvision constructor holds the same architecture (for weight import/export).
TORCHVISION_NAMES = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}

# LRN parameters of Krizhevsky et al. 2012 (§2.1, net A-LRN): b = a / (k + alpha * sum a^2)^beta over
# 5 adjacent channels with alpha = 1e-4. PyTorch's LocalResponseNorm (like Caffe's LRN layer) divides
# its alpha by the window size, so the paper's layer takes alpha = 5 * 1e-4.
LRN_SIZE, LRN_ALPHA = 5, 1e-4
LRN_PARAMS = dict(size=LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=0.75, k=2.0)

# The layers a deeper net copies from a trained net A (§3.1: "the first four convolutional layers
# and the last three fully-connected layers"). Matched by name: A's conv1_1, conv2_1, conv3_1 and
# conv3_2 have the same shapes as the same-named layers of B-E; by position they would not.
WARM_START_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")


@dataclass(frozen=True)
class Layer:
    """One layer of a configuration: a convolution (``kernel`` > 0) or an LRN (``kernel`` == 0)."""

    name: str  # paper/Caffe naming: conv{stage}_{index}, or norm{stage}
    kernel: int
    out_channels: int

    @property
    def is_conv(self) -> bool:
        return self.kernel > 0


def parse_config(name: str) -> list[list[Layer]]:
    """The layers of a configuration, stage by stage, with their paper names."""
    stages = []
    for s, stage in enumerate(TABLE1[name], start=1):
        layers, index = [], 0
        for token in stage.split():
            if token == "LRN":
                layers.append(Layer(f"norm{s}", 0, 0))
                continue
            kind, width = token.split("-")
            index += 1
            layers.append(Layer(f"conv{s}_{index}", int(kind[len("conv") :]), int(width)))
        stages.append(layers)
    return stages


def weight_layers(name: str) -> int:
    """Number of weight layers (the paper's depth: 11, 13, 16, 16, 19, ...)."""
    return sum(layer.is_conv for stage in parse_config(name) for layer in stage) + 3
