"""A tiny training run and its evaluation, compared bit for bit with outputs recorded before the
engine was restructured (tests/golden/engine.safetensors): weights, per-image posteriors of every
protocol and the per-epoch figures. Floating-point results depend on the library versions, so
the comparison runs where they are the ones that recorded it (torch, numpy, Pillow)."""
import json

import numpy as np
import PIL
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from vggnet.engine import load_config, train
from vggnet.eval.posteriors import load_posteriors
from vggnet.eval.runner import evaluate
from vggnet.models import load_model

GOLDEN = __import__("pathlib").Path(__file__).parent / "golden" / "engine.safetensors"


def make_png_set(root):
    """Lossless images from a seeded generator: the pixels do not depend on a JPEG encoder."""
    rng = np.random.default_rng(7)
    for split, n in (("train", 12), ("val", 3)):
        for c in range(3):
            for i in range(n):
                base = np.zeros((44, 52, 3), np.float32) + rng.uniform(0, 255, 3)
                base[..., c] += 60 * np.sin(np.arange(52) / (2 + c))[None, :]
                img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
                path = root / split / f"k{c}" / f"{i:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)


def golden():
    with safe_open(str(GOLDEN), framework="pt") as f:
        info = json.loads(f.metadata()["info"])
    return load_file(str(GOLDEN)), info


def test_training_and_evaluation_are_bit_identical_to_the_recorded_run(tmp_path):
    tensors, info = golden()
    versions = dict(torch=torch.__version__, pillow=PIL.__version__, numpy=np.__version__)
    if any(versions[k] != info[k] for k in versions):
        pytest.skip(f"recorded with {info['torch']}/{info['pillow']}/{info['numpy']}, running {versions}")
    make_png_set(tmp_path / "d")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(None, dict(arch="A", width=1 / 16, fc_dim=32, crop=32, scale="32:40",
                                     data=str(tmp_path / "d/train"), val_data=str(tmp_path / "d/val"), batch_size=8,
                                     lr=0.02, epochs=2, workers=0, out=str(tmp_path / "run"), progress=False,
                                     init="gaussian", dropout=0.3, stats_max_images=64, checkpoint_steps=0, seed=5,
                                     channels_last="off"))
        assert train(cfg)["status"] == "done"
        evaluate(tmp_path / "run/final.safetensors", tmp_path / "d/val",
                 ["center", "dense", "multicrop", "dense+multicrop"], scales=[32, 40], out=tmp_path / "ev",
                 channels_last="off", amp="off")
    finally:
        torch.set_num_threads(threads)
    model, _ = load_model(tmp_path / "run/final.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, tensors[f"w/{k}"]), k
    probs = load_posteriors(tmp_path / "ev")["probs"]
    recorded = {k[2:]: v for k, v in tensors.items() if k.startswith("p/")}
    assert set(recorded) <= set(probs)
    for k, v in recorded.items():
        assert torch.equal(probs[k], v), k
    log = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    for mine, theirs in zip(log, info["log"], strict=True):
        assert {k: mine[k] for k in theirs} == theirs
