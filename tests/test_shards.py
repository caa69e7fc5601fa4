"""Tar shards, a storage format added through the one data seam: written by `vggnet data shard`,
read by open_source; training from shards equals training from the folder, and a run killed
mid-epoch resumes exactly from shards."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

from helpers import kill_mid_epoch
from vggnet.cli import main
from vggnet.data.datasets import open_source
from vggnet.data.images import ImageReadError, load_rgb
from vggnet.data.shards import INDEX, write_shards
from vggnet.data.synth import make_synthetic
from vggnet.engine import load_config, train
from vggnet.errors import VGGError
from vggnet.models import load_model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    make_synthetic(root / "d", classes=3, per_class=16, val_per_class=2, size=44, seed=4, workers=0)
    for split in ("train", "val"):
        assert (
            main(
                [
                    "data",
                    "shard",
                    str(root / "d" / split),
                    "--out",
                    str(root / "s" / split),
                    "--per-shard",
                    "5",
                ]
            )
            == 0
        )
    return root


def test_shards_hold_the_files_in_webdataset_naming_and_read_back_by_index(world):
    folder, shards = open_source(world / "d/train"), open_source(world / "s/train")
    assert shards.classes == folder.classes and shards.ids == folder.ids
    assert [label for _, label in shards.samples] == [label for _, label in folder.samples]
    for i in reversed(range(len(folder))):  # any order: each image is one seek away
        a, b = np.asarray(folder.read(i)), np.asarray(shards.read(i))
        assert a.shape == b.shape and np.array_equal(a, b)
    index = json.loads((world / "s/train" / INDEX).read_text())
    assert len(index["shards"]) == -(-len(folder) // 5)
    with tarfile.open(world / "s/train" / index["shards"][0]) as tar:
        names = tar.getnames()
        assert names[:3] == ["000000000.jpg", "000000000.cls", "000000000.json"]
        assert tar.extractfile("000000000.cls").read().decode().strip() == str(folder.samples[0][1])
        assert json.loads(tar.extractfile("000000000.json").read())["id"] == folder.ids[0]
        assert tar.extractfile("000000000.jpg").read() == open(folder.samples[0][0], "rb").read()


def test_a_model_class_order_relabels_shards(world):
    classes = list(reversed(open_source(world / "d/train").classes))
    shards, folder = (
        open_source(world / "s/train", classes=classes),
        open_source(world / "d/train", classes=classes),
    )
    assert shards.samples[0][1] == folder.samples[0][1] and shards.classes == classes
    with pytest.raises(VGGError, match="not among"):
        open_source(world / "s/train", classes=classes[:2])


def cfg(data, out, **kw):
    return load_config(
        None,
        dict(
            dict(
                arch="A",
                width=1 / 16,
                fc_dim=16,
                crop=32,
                scale="32:40",
                data=str(data / "train"),
                val_data=str(data / "val"),
                batch_size=6,
                epochs=2,
                workers=0,
                out=str(out),
                progress=False,
                init="glorot",
                dropout=0.0,
                stats_max_images=64,
            ),
            **kw,
        ),
    )


def test_training_from_shards_equals_training_from_the_folder(world, tmp_path):
    train(cfg(world / "d", tmp_path / "folder"))
    train(cfg(world / "s", tmp_path / "shards", workers=2))
    a, _ = load_model(tmp_path / "folder/final.safetensors")
    b, _ = load_model(tmp_path / "shards/final.safetensors")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    logs = [
        [json.loads(line)["val_top1_err"] for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        for run in ("folder", "shards")
    ]
    assert logs[0] == logs[1]


def _cli(data, out, *extra):
    args = [
        "--arch",
        "A",
        "--width",
        "0.0625",
        "--fc-dim",
        "16",
        "--crop",
        "32",
        "--scale",
        "32:40",
        "--data",
        str(data / "train"),
        "--val-data",
        str(data / "val"),
        "--batch-size",
        "4",
        "--lr",
        "0.01",
        "--epochs",
        "4",  # the kill lands in epoch 2 of 4: the run cannot finish before it is seen
        "--workers",
        "0",
        "--out",
        str(out),
        "--no-progress",
        "--init",
        "glorot",
        "--dropout",
        "0.3",
        "--checkpoint-steps",
        "1",
        "--deterministic",
        *extra,
    ]
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "vggnet", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_from_shards_equals_uninterrupted(world, tmp_path):
    ref = _cli(world / "s", tmp_path / "ref")
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    run = tmp_path / "run"
    p = _cli(world / "s", run)
    kill_mid_epoch(p, run)
    assert not (run / "final.safetensors").exists()
    r = _cli(world / "s", run, "--resume")
    assert r.wait(timeout=300) == 0, r.stderr.read()
    a, _ = load_model(tmp_path / "ref/final.safetensors")
    b, _ = load_model(run / "final.safetensors")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_damaged_index_or_member_is_named(world, tmp_path):
    source = open_source(world / "d/train")
    out = tmp_path / "s"
    write_shards(source, out, per_shard=100)
    index = json.loads((out / INDEX).read_text())
    index["samples"][0][1] = 10**9
    (out / INDEX).write_text(json.dumps(index))
    with pytest.raises(VGGError, match="sample 0 lies outside shard-000000.tar"):
        open_source(out)
    index["samples"][0][1:3] = [0, 512]  # the first member's tar header, not an image
    (out / INDEX).write_text(json.dumps(index))
    shards = open_source(out)
    with pytest.raises(ImageReadError, match="shard-000000.tar:000000000.jpg"):
        shards.read(0)
    assert np.array_equal(np.asarray(shards.read(1)), np.asarray(load_rgb(source.samples[1][0])))


def test_shards_are_not_replaced_without_force(world, tmp_path, capsys):
    args = ["data", "shard", str(world / "d/val"), "--out", str(tmp_path / "s")]
    assert main(args) == 0
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
