"""Small real files for the tests."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path, size=(40, 30), colour=None, mode="RGB", fmt=None, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    if colour is not None:
        img = Image.new("RGB", size, tuple(colour))
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, fmt)
    return path


def make_folder(root, classes=("a", "b", "c"), per_class=4, size=(40, 30), ext=".png"):
    root = Path(root)
    for c_i, c in enumerate(classes):
        for n in range(per_class):
            write_image(root / c / f"{c}{n}{ext}", size, seed=c_i * 100 + n)
    return root


def kill_mid_epoch(process, run_dir, epoch=1, step=2, timeout=300):
    """SIGKILL `process` (a training run) once its checkpoint is in the middle of `epoch`."""
    import signal
    import time

    from vggnet.errors import VGGError
    from vggnet.models import read_meta

    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            state = read_meta(Path(run_dir) / "last.safetensors").train_state
            if state["epoch"] == epoch and state["step"] >= step:
                break
        except VGGError:
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def boxed_world(root, seed):
    """A synthetic set with boxes and a tiny classifier trained on it for one epoch (``root/cls``):
    the starting point of the localisation tests."""
    from vggnet.data.synth import make_synthetic
    from vggnet.engine import load_config, train

    make_synthetic(root / "d", classes=3, per_class=16, val_per_class=4, size=48, seed=seed, workers=2)
    train(
        load_config(
            None,
            dict(
                arch="A",
                width=1 / 16,
                fc_dim=32,
                crop=32,
                scale="40",
                data=str(root / "d/train"),
                val_data=str(root / "d/val"),
                batch_size=8,
                epochs=1,
                workers=0,
                out=str(root / "cls"),
                progress=False,
                init="glorot",
                dropout=0.0,
            ),
        )
    )
    return root
