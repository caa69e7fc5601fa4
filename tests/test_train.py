"""Training engine: CPU, tiny nets, synthetic data; real processes for kill/resume and DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import kill_mid_epoch
from vggnet.data.synth import make_synthetic
from vggnet.data.transforms import Scale
from vggnet.engine import PlateauSchedule, load_config, train
from vggnet.errors import VGGError
from vggnet.models import WARM_START_LAYERS, load_model


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    make_synthetic(root / "d", classes=4, per_class=16, val_per_class=4, size=40, seed=3, workers=2)
    return root / "d"


def tiny_cfg(synth, out, **kw):
    base = dict(
        arch="A",
        width=1 / 16,
        fc_dim=32,
        crop=32,
        scale="32:40",
        data=str(synth / "train"),
        val_data=str(synth / "val"),
        batch_size=16,
        lr=0.01,
        epochs=2,
        workers=0,
        out=str(out),
        progress=False,
        init="glorot",
        dropout=0.0,
        stats_max_images=64,
    )
    base.update(kw)
    return load_config(None, base)


def weights(path):
    model, _ = load_model(path)
    return model.state_dict()


def same_weights(a, b, atol=0.0):
    return all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def test_schedule_drops_on_plateau_and_stops_after_three_drops():
    s = PlateauSchedule(lr=0.01, patience=1, max_drops=3)
    errors = [50, 40, 41, 42, 39, 39, 39, 38, 38, 38, 38, 38]
    events = [s.step(e) for e in errors]
    drops = [i for i, e in enumerate(events) if e["dropped"]]
    assert drops == [3, 6, 9] and abs(s.lr - 1e-5) < 1e-12
    assert not any(e["stop"] for e in events[:11]) and events[11]["stop"]
    s2 = PlateauSchedule.from_state(s.state_dict())
    assert s2 == s


def test_loss_falls_and_run_folder_contents(synth, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_cfg(synth, out, epochs=3, lr=0.05, width=1 / 8, fc_dim=64))
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and result["status"] == "done"
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    for name in ("config.yaml", "stats.json", "last.safetensors", "best.safetensors", "final.safetensors"):
        assert (out / name).is_file(), name
    _, meta = load_model(out / "final.safetensors")
    assert meta.classes == sorted(meta.classes) and len(meta.classes) == 4
    assert tuple(meta.train.scale) == (32, 40) and len(meta.preprocessing.pca_eigval) == 3
    assert {"lr", "val_top1_err", "val_top5_err", "images_per_s"} <= set(log[0])


def test_gradient_accumulation_equals_one_large_batch(synth, tmp_path):
    # fp32: the identity is one of arithmetic; bf16 rounds each chunk's activations differently
    a = train(tiny_cfg(synth, tmp_path / "a", epochs=1, micro_batch=0, amp="off"))
    b = train(tiny_cfg(synth, tmp_path / "b", epochs=1, micro_batch=4, amp="off"))
    assert a["status"] == b["status"] == "done"
    assert same_weights(
        weights(tmp_path / "a" / "final.safetensors"),
        weights(tmp_path / "b" / "final.safetensors"),
        atol=1e-5,
    )


def test_warm_start_from_a(synth, tmp_path):
    train(tiny_cfg(synth, tmp_path / "a", epochs=1))
    train(
        tiny_cfg(
            synth,
            tmp_path / "d",
            arch="D",
            epochs=1,
            lr=1e-9,
            weight_decay=0.0,
            init_from=str(tmp_path / "a" / "final.safetensors"),
        )
    )
    d, meta = load_model(tmp_path / "d" / "final.safetensors")
    assert meta.train.warm_start["layers"] == list(WARM_START_LAYERS)
    layers = d.weight_layers()
    a_model, _ = load_model(tmp_path / "a" / "final.safetensors")
    src = a_model.weight_layers()
    for name in WARM_START_LAYERS:  # lr ~0: the copied weights are still A's
        assert torch.allclose(layers[name].weight, src[name].weight, atol=1e-6), name
    assert layers["conv1_2"].weight.shape == (4, 4, 3, 3)


def test_bad_configs_refused_before_work(synth, tmp_path):
    with pytest.raises(VGGError, match="smaller than the crop"):
        train(tiny_cfg(synth, tmp_path / "x", scale="16"))
    with pytest.raises(VGGError, match="Smin must be <= Smax"):
        train(tiny_cfg(synth, tmp_path / "x", scale="48:40"))
    with pytest.raises(VGGError, match="multiple of 32"):
        train(tiny_cfg(synth, tmp_path / "x", crop=48, scale="64"))
    with pytest.raises(VGGError, match="valid: A, A-LRN"):
        train(tiny_cfg(synth, tmp_path / "x", arch="Z"))
    with pytest.raises(VGGError, match="micro-batch"):
        train(tiny_cfg(synth, tmp_path / "x", micro_batch=5))
    with pytest.raises(VGGError, match="valid: gaussian, glorot"):
        train(tiny_cfg(synth, tmp_path / "x", init="xavier"))
    with pytest.raises(VGGError, match="fewer than one global batch"):
        train(tiny_cfg(synth, tmp_path / "x", batch_size=4096))
    with pytest.raises(VGGError, match="expected int"):
        load_config(None, dict(epochs="many"))
    with pytest.raises(VGGError, match="unknown config key 'epoch'"):
        load_config(None, dict(epoch=3))
    assert not (tmp_path / "x").exists()  # nothing was created


def test_yaml_recipe_and_overrides(tmp_path):
    (tmp_path / "r.yaml").write_text("arch: D\nscale: '256:512'\nlr: 0.001\nbatch-size: 128\n")
    cfg = load_config(str(tmp_path / "r.yaml"), dict(lr=0.005))
    assert (cfg.arch, cfg.scale, cfg.lr, cfg.batch_size) == ("D", Scale(256, 512), 0.005, 128)
    (tmp_path / "bad.yaml").write_text("arch: D\nlearning_rate: 1\n")
    with pytest.raises(VGGError, match="unknown config key 'learning_rate'"):
        load_config(str(tmp_path / "bad.yaml"))


def test_recipes_in_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "configs"
    recipes = sorted(root.glob("*.yaml"))
    assert len(recipes) >= 6
    for r in recipes:
        cfg = load_config(str(r))
        assert cfg.recipe, f"{r.name} names no paper experiment"
        from vggnet.data.transforms import check_scale

        check_scale(cfg.scale, cfg.crop)


def test_non_empty_run_folder_is_not_overwritten(synth, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(VGGError, match="not empty"):
        train(tiny_cfg(synth, out))
    assert (out / "precious.txt").read_text() == "keep me"
    with pytest.raises(VGGError, match="nothing to resume"):
        train(tiny_cfg(synth, out, resume=True))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(synth, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(synth, out, epochs=1))
    # The learning rate lives in the checkpoint's schedule: blow it up there, then resume.
    from safetensors.torch import load_file, safe_open, save_file

    path = out / "last.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["vggnet"])
    meta["train_state"]["schedule"]["lr"] = 1e12
    save_file(load_file(str(path)), str(path), metadata={"vggnet": json.dumps(meta)})
    before, final = path.read_bytes(), (out / "final.safetensors").read_bytes()
    with pytest.raises(VGGError, match="not finite"):
        train(tiny_cfg(synth, out, epochs=3, resume=True))
    assert path.read_bytes() == before and (out / "final.safetensors").read_bytes() == final


def _cli(args, **kw):
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "vggnet", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _args(synth, out, *extra):
    return [
        "--arch",
        "A",
        "--width",
        "0.0625",
        "--fc-dim",
        "32",
        "--crop",
        "32",
        "--scale",
        "32:40",
        "--data",
        str(synth / "train"),
        "--val-data",
        str(synth / "val"),
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--epochs",
        "2",
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


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(synth, tmp_path):
    ref = _cli(_args(synth, tmp_path / "ref"))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    run = tmp_path / "run"
    p = _cli(_args(synth, run))
    # Kill it without warning once it is in the middle of its second epoch.
    kill_mid_epoch(p, run)
    assert not (run / "final.safetensors").exists()
    r = _cli(_args(synth, run, "--resume"))
    assert r.wait(timeout=300) == 0, r.stderr.read()
    assert same_weights(weights(tmp_path / "ref" / "final.safetensors"), weights(run / "final.safetensors"))
    log_ref = (tmp_path / "ref" / "log.jsonl").read_text().splitlines()
    log_run = (run / "log.jsonl").read_text().splitlines()
    assert [json.loads(l)["val_top1_err"] for l in log_ref] == [
        json.loads(l)["val_top1_err"] for l in log_run
    ]


@pytest.mark.slow
def test_sigterm_writes_checkpoint_and_resume_finishes(synth, tmp_path):
    run = tmp_path / "run"
    p = _cli(_args(synth, run, "--checkpoint-steps", "0", "--epochs", "3"))
    while not (run / "log.jsonl").is_file() and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode in (0, 130), err
    if p.returncode == 130:
        assert "interrupted" in err and "Traceback" not in err
        r = _cli(_args(synth, run, "--checkpoint-steps", "0", "--epochs", "3", "--resume"))
        assert r.wait(timeout=300) == 0, r.stderr.read()
    assert (run / "final.safetensors").is_file()
    assert len((run / "log.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_two_process_gloo_ddp_equals_one_process(synth, tmp_path):
    common = ["--dropout", "0", "--checkpoint-steps", "0", "--amp", "off"]  # an arithmetic identity: fp32
    one = _cli(_args(synth, tmp_path / "one", *common))
    assert one.wait(timeout=300) == 0, one.stderr.read()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # --standalone: torchrun picks a free local rendezvous port itself (no race with other runs).
    # Its own session, so that on a timeout every rank is killed and none outlives the test.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "vggnet",
            "train",
            *_args(synth, tmp_path / "two", *common),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    two = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = weights(tmp_path / "one" / "final.safetensors"), weights(tmp_path / "two" / "final.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    assert not any(tmp_path.joinpath("two").glob("*rank*"))


def test_unreadable_training_image_is_skipped_counted_or_fails(synth, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth / "train", data)
    broken = data / sorted(p.name for p in data.iterdir())[0] / "zz_broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a complete JPEG")
    # Statistics are computed before training; give them so that only training meets the file.
    from vggnet.data import compute_stats, image_folder, save_stats

    save_stats(tmp_path / "stats.json", compute_stats(image_folder(synth / "train")))
    out = tmp_path / "run"
    result = train(tiny_cfg(synth, out, data=str(data), epochs=2, stats=str(tmp_path / "stats.json")))
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    seen = sum(r["bad_images"] for r in log)
    assert result["status"] == "done" and seen == result["bad_images"] >= 1
    assert "zz_broken.jpg" in (out / "bad_images.txt").read_text()
    with pytest.raises(VGGError, match="unreadable training image .*zz_broken.jpg"):
        train(
            tiny_cfg(
                synth,
                tmp_path / "run2",
                data=str(data),
                epochs=2,
                on_bad_image="fail",
                stats=str(tmp_path / "stats.json"),
            )
        )
