"""``vggnet export``: a weight file -> an ONNX model that needs nothing of this project.

The exported graph takes what a deployment has: uint8 RGB images, (N, 3, H, W); the weights' own
preprocessing (channel order, value range, mean, std) is part of the graph, so no caller can feed
it wrongly. ``forward`` gives class scores (N, classes) for crop-sized images; ``--dense`` gives
the fully-convolutional score map (N, classes, h, w) of §3.2 for any H, W >= the crop (dynamic
height and width). Before the command reports success, the file is run with ONNX Runtime on
random images (two sizes for the dense variant) and compared with PyTorch. The class names go to
``NAME.classes.txt`` beside it (one per line, as ``vggnet convert`` reads them), and the input
contract -- layout, dtype, channel order, the size an image is resized and cropped to -- with the
class names (id and readable name) to ``NAME.json`` beside it and into the model's metadata_props
(``vggnet.input``, ``vggnet.classes``, JSON), so a deployment needs nothing else to feed it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings

import torch
from torch import nn

from ..data.imagenet import readable_names
from ..data.transforms import Normalizer, Scale, default_scales
from ..errors import VGGError
from ..fileio import atomic_write, claim_output, write_json, write_text
from .weights import classes_file, load_model

TOLERANCE = 1e-3  # largest difference of outputs accepted, relative to their largest magnitude


class Deployable(nn.Module):
    """uint8 RGB images -> scores: the preprocessing and the net in one module."""

    def __init__(self, model, preprocessing, dense: bool = False):
        super().__init__()
        self.model, self.normalize, self.dense = model, Normalizer(preprocessing), dense

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        return self.model.dense(x) if self.dense else self.model(x)


def _imports():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise VGGError(
            f"ONNX export needs the onnx extra ({e.name} is missing): pip install 'vggnet[onnx]'"
        ) from None
    return onnxruntime


def _examples(crop: int, dense: bool) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sizes = [(crop + 32, crop + 64), (crop, crop + 32)] if dense else [(crop, crop)]
    return [torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8, generator=g) for h, w in sizes]


def check_onnx(path, module: Deployable, crop: int, dense: bool) -> float:
    """Run the file with ONNX Runtime and compare with PyTorch; returns the largest relative gap."""
    ort = _imports()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    with torch.no_grad():
        for x in _examples(crop, dense):
            ref = module(x)
            got = torch.from_numpy(session.run(None, {name: x.numpy()})[0])
            if got.shape != ref.shape:
                raise VGGError(
                    f"{path}: ONNX output shape {tuple(got.shape)} differs from PyTorch's {tuple(ref.shape)}"
                )
            worst = max(worst, float((got - ref).abs().max() / ref.abs().max().clamp(min=1e-6)))
    if worst > TOLERANCE:
        raise VGGError(
            f"{path}: ONNX Runtime's outputs differ from PyTorch's by {worst:.1e} (relative); not exported"
        )
    return worst


def input_contract(meta, crop: int, dense: bool, output: str) -> dict:
    """What the exported graph takes: uint8 RGB in NCHW, the image's smallest side resized to the
    net's test scale Q (§4.1: S, or the middle of a jittered range) and, for the crop-sized graph,
    the centre crop; the normalisation is inside the graph."""
    q = default_scales(Scale(*meta.train.scale) if meta.train else None, crop)[0]
    return dict(
        input="images",
        layout="NCHW",
        dtype="uint8",
        channels="RGB",
        value_range="0-255",
        shape=["N", 3, "H", "W"] if dense else ["N", 3, crop, crop],
        resize_smallest_side=q,
        crop=None if dense else crop,
        min_side=crop,
        steps=(
            f"resize the smallest side to {q}, keep the whole image (H, W >= {crop})"
            if dense
            else f"resize the smallest side to {q}, take the centre {crop}x{crop} crop"
        ),
        preprocessing_in_graph=meta.preprocessing.describe(),
        output=output,
    )


def class_table(classes: list[str]) -> list[dict]:
    """Each output's class id (an ImageNet wnid, or the data set's class name) and readable name."""
    return [{"class": c, "name": n} for c, n in zip(classes, readable_names(classes))]


def export_onnx(checkpoint, out, dense: bool = False, force: bool = False) -> dict:
    _imports()
    out = claim_output(out, "ONNX", force)
    claim_output(classes_file(out), "text", force)
    claim_output(out.with_suffix(".json"), "JSON", force)
    model, meta = load_model(checkpoint)
    module = Deployable(model.eval(), meta.preprocessing, dense).eval()
    crop = model.crop_size
    example = _examples(crop, dense)[0]
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = {
        2: torch.export.Dim("height", min=crop, max=8192),
        3: torch.export.Dim("width", min=crop, max=8192),
    }
    dynamic = {"images": {0: batch, **(shapes if dense else {})}}
    report = {}

    boxes = model.spec.head != "classifier"  # a box regressor (App. A) exports its boxes
    output = ("box_map" if dense else "boxes") if boxes else ("score_map" if dense else "scores")
    contract, classes = input_contract(meta, crop, dense, output), class_table(meta.classes)

    def write(tmp):
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the exporter's notes about optional torchvision operators
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    input_names=["images"],
                    output_names=[output],
                    dynamic_shapes=dynamic,
                    verbose=False,
                )
        finally:
            quiet.setLevel(level)
        program.model.metadata_props.update(
            {
                "vggnet.input": json.dumps(contract),
                "vggnet.classes": json.dumps(classes),
                "vggnet.input_steps": contract["steps"],
            }
        )
        program.save(tmp)
        report["gap"] = check_onnx(tmp, module, crop, dense)

    try:
        atomic_write(out, write)
    except VGGError:
        raise
    except Exception as e:  # the exporter's own failures: one line, named
        raise VGGError(
            f"ONNX export of {checkpoint} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from None
    write_text(classes_file(out), "".join(f"{c}\n" for c in meta.classes))
    write_json(
        out.with_suffix(".json"), dict(model=out.name, arch=model.arch, input=contract, classes=classes)
    )
    return dict(
        out=str(out),
        dense=dense,
        gap=report["gap"],
        classes_file=str(classes_file(out)),
        arch=model.arch,
        preprocessing=meta.preprocessing.describe(),
        crop=crop,
        output=output,
        contract=contract,
        contract_file=str(out.with_suffix(".json")),
    )
