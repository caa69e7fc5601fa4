"""A tiny training run and its evaluation, compared with outputs recorded before the engine was
restructured (tests/golden/engine.safetensors): weights, per-image posteriors of every protocol and
the per-epoch figures.

PyTorch does not promise the same floats on two CPU families (its kernels differ by instruction
set), so the comparison that runs everywhere uses tolerances sized from measurements:

- On a CPU other than the recording's (a 2-core AMD EPYC with AVX512_BF16 against the recording's
  Intel Xeon with AMX, same torch/numpy/Pillow) the weights differ by at most 1.5e-11 absolute,
  1.2e-7 relative (one float32 ulp). The tolerance, 1e-5 relative + 1e-7 absolute (~80 ulps),
  leaves room for the order of accumulation on other instruction sets.
- A real change is far outside it: the same run at lr 0.0201 instead of 0.02 (0.5%) moves a weight
  by 4e-5 (400x the tolerance's absolute part). `test_tolerance_*` below check both ends.

The bit-for-bit comparison is kept where it can hold: same libraries *and* the recording's CPU
(vendor, ATen instruction set, AMX), recorded in the file's `machine` field."""

import json
from pathlib import Path

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

GOLDEN = Path(__file__).parent / "golden" / "engine.safetensors"
RTOL, ATOL = 1e-5, 1e-7  # weights and posteriors; see the module docstring


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


def cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def this_machine() -> dict:
    """What decides the floats of a CPU run besides the libraries: who made the CPU, the
    instruction set ATen dispatches to, and whether AMX units run the matrix products."""
    try:
        vendor = next(
            ln.partition(":")[2].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("vendor_id")
        )
    except (OSError, StopIteration):
        vendor = "unknown"
    return dict(
        vendor=vendor, cpu_capability=torch.backends.cpu.get_cpu_capability(), amx="amx_tile" in cpu_flags()
    )


def versions() -> dict:
    return dict(torch=torch.__version__, pillow=PIL.__version__, numpy=np.__version__)


def replay(tmp_path, lr=0.02):
    """The recorded run: 2 epochs of a 1/16-width A on 36 PNGs, one thread, fp32 throughout."""
    make_png_set(tmp_path / "d")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(
            None,
            dict(
                arch="A",
                width=1 / 16,
                fc_dim=32,
                crop=32,
                scale="32:40",
                data=str(tmp_path / "d/train"),
                val_data=str(tmp_path / "d/val"),
                batch_size=8,
                lr=lr,
                epochs=2,
                workers=0,
                out=str(tmp_path / "run"),
                progress=False,
                init="gaussian",
                dropout=0.3,
                stats_max_images=64,
                checkpoint_steps=0,
                seed=5,
                channels_last="off",
                amp="off",
            ),
        )
        assert train(cfg)["status"] == "done"
        evaluate(
            tmp_path / "run/final.safetensors",
            tmp_path / "d/val",
            ["center", "dense", "multicrop", "dense+multicrop"],
            scales=[32, 40],
            out=tmp_path / "ev",
            channels_last="off",
            amp="off",
        )
    finally:
        torch.set_num_threads(threads)
    model, _ = load_model(tmp_path / "run/final.safetensors")
    log = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    return model.state_dict(), load_posteriors(tmp_path / "ev")["probs"], log


def differences(weights, probs, log, tensors, info, exact=False) -> list[str]:
    """Every place where a replay departs from the recording (empty: they agree)."""

    def same(a, b):
        return torch.equal(a, b) if exact else torch.allclose(a, b, rtol=RTOL, atol=ATOL)

    bad = [f"weight {k}" for k, v in weights.items() if not same(v, tensors[f"w/{k}"])]
    recorded = {k[2:]: v for k, v in tensors.items() if k.startswith("p/")}
    bad += [f"posteriors {k} missing" for k in recorded if k not in probs]
    bad += [f"posteriors {k}" for k, v in recorded.items() if k in probs and not same(probs[k], v)]
    if len(log) != len(info["log"]):
        return bad + [f"{len(log)} epochs logged, {len(info['log'])} recorded"]
    for mine, theirs in zip(log, info["log"]):
        bad += [
            f"epoch {theirs['epoch']} {k}" for k, v in theirs.items() if not same_figure(k, mine[k], v, exact)
        ]
    return bad


def same_figure(key, mine, theirs, exact):
    """Per-epoch figures: losses within the weights' relative tolerance; error rates are counts
    and may differ by one image only where a prediction sat on a tie (a ulp away)."""
    if exact or not isinstance(theirs, float):
        return mine == theirs
    if key.endswith("_err"):
        return abs(mine - theirs) <= 100 / 36 + 1e-9  # one image of the 36 training images
    return abs(mine - theirs) <= RTOL * abs(theirs) + ATOL


@pytest.fixture(scope="module")
def recorded():
    tensors, info = golden()
    if versions() != {k: info[k] for k in versions()}:
        pytest.skip(
            f"recorded with torch {info['torch']}, Pillow {info['pillow']}, numpy {info['numpy']};"
            f" running {versions()}"
        )
    return tensors, info


def test_training_and_evaluation_match_the_recorded_run(tmp_path, recorded):
    assert differences(*replay(tmp_path), *recorded) == []


def test_bit_identical_to_the_recorded_run_on_the_recording_machine(tmp_path, recorded):
    if this_machine() != recorded[1]["machine"]:
        pytest.skip(f"recorded on {recorded[1]['machine']}, running on {this_machine()}")
    assert differences(*replay(tmp_path), *recorded, exact=True) == []


def test_tolerance_accepts_a_few_ulps_of_drift(recorded):
    tensors, info = recorded
    weights = {k[2:]: v for k, v in tensors.items() if k.startswith("w/")}
    probs = {k[2:]: v for k, v in tensors.items() if k.startswith("p/")}
    drifted = {k: nudge(v, 4) for k, v in weights.items()}
    assert differences(drifted, {k: nudge(v, 4) for k, v in probs.items()}, info["log"], tensors, info) == []
    assert differences(drifted, probs, info["log"], tensors, info, exact=True) != []


def test_tolerance_catches_a_changed_learning_rate(tmp_path, recorded):
    bad = differences(*replay(tmp_path, lr=0.0201), *recorded)
    assert any(b.startswith("weight") for b in bad)


def nudge(t: torch.Tensor, ulps: int) -> torch.Tensor:
    """`t` moved `ulps` float32 steps away from zero, element by element."""
    out = t.clone()
    for _ in range(ulps):
        out = torch.nextafter(
            out, torch.where(out >= 0, torch.tensor(float("inf")), torch.tensor(float("-inf")))
        )
    return out
