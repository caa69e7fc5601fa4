"""The weight files shipped in weights/: each loads, is described, stays small and gives scores."""

from pathlib import Path

import pytest
import torch

from vggnet.models.weights import load_model, read_weights

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
FILES = sorted(WEIGHTS.glob("*.safetensors"))


def test_there_are_shipped_weights():
    assert FILES, "weights/ holds no .safetensors file"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_each_file_is_described_small_and_runs(path):
    assert path.stat().st_size <= 10 * 2**20, "a shipped file stays under 10 MB"
    assert f"`{path.name}`" in (WEIGHTS / "README.md").read_text(), "each file has its README line"
    model, meta = load_model(path)
    assert len(meta.classes) == 100 and meta.train is not None  # trained here, on 100 classes
    outputs = {"classifier": 100, "pcr": 400, "scr": 4}[meta.model.head]
    with torch.no_grad():
        y = model.eval()(torch.rand(2, 3, model.crop_size, model.crop_size))
    assert y.shape == (2, outputs) and torch.isfinite(y).all()
    # the file holds fp32 weights whatever precision trained them (bf16 autocast keeps fp32 masters)
    state, _ = read_weights(path)
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())
