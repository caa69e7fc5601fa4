"""The promises of docs/RELIABILITY.md, tried as a hostile user would: every command given bad
input of each kind (a wrong file, an impossible setting, an output that would replace a result,
an input that would take unbounded time or memory), and the faults a real run meets (a full disk,
a kill, a second run on one folder, a closed pipe, a diverging run).

Each refusal must be: a non-zero exit status, no traceback, exactly one line on stderr that names
the problem (the file or the setting), and every file that existed before byte-identical after.
Tiny nets and a dozen 40-pixel images keep the whole module fast; commands run in-process through
``vggnet.cli.main`` except where a real process matters (a kill, a lock, a pipe, a link loop).
"""

import importlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny
from helpers import make_folder, write_image
from vggnet.cli import main
from vggnet.errors import VGGError, describe
from vggnet.models import init_weights, load_model, read_weights, save_weights

ROOT = Path(__file__).resolve().parents[1]
PRE = dict(channel_order="RGB", value_range=255.0, mean=[120.0, 115.0, 100.0], std=[1.0, 1.0, 1.0])


# -- helpers --------------------------------------------------------------------------------------
def cli(capsys, *argv):
    """Run ``vggnet ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own exit
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    """The single ``vggnet CMD: error: ...`` line stderr must hold, with no traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("vggnet") and ": error: " in lines[0], lines[0]
    return lines[0]


def refused(capsys, *argv, says=()):
    rc, out, err = cli(capsys, *argv)
    assert rc == 2, (rc, out, err)
    line = one_line(err)
    for text in [says] if isinstance(says, str) else says:
        assert str(text) in line, f"{text!r} not in: {line}"
    return line


def snapshot(folder) -> dict:
    """Every file under `folder` (links not followed) and its bytes."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")


def vggnet_process(*argv, **kw):
    return subprocess.Popen([sys.executable, "-m", "vggnet", *map(str, argv)], env=env(), **kw)


def train_args(data, out, *extra):
    return [
        "train",
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
        data,
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--no-progress",
        "--stats-max-images",
        "12",
        "--init",
        "glorot",
        "--dropout",
        "0",
        "--out",
        out,
        *extra,
    ]


def all_finite(path) -> bool:
    tensors, _ = read_weights(path)
    return all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


def vggnet_meta(path):
    from safetensors.torch import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["vggnet"])


def rewrite_meta(src, dst, meta):
    """`src`'s tensors with the metadata document `meta` (a dict or raw text)."""
    from safetensors.torch import load_file, save_file

    save_file(
        load_file(str(src)),
        str(dst),
        metadata={"vggnet": meta if isinstance(meta, str) else json.dumps(meta)},
    )


@pytest.fixture(autouse=True)
def _cwd_and_umask():
    here, mask = os.getcwd(), os.umask(0o022)
    yield
    os.chdir(here)
    os.umask(mask)


# -- the world a hostile user attacks -------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data set, a checkpoint, an evaluation folder, a trained run, and a folder of bad inputs."""
    mask = os.umask(0o022)
    try:
        root = tmp_path_factory.mktemp("world")
        w = SimpleNamespace(
            root=root,
            data=make_folder(root / "data", ("a", "b", "c"), per_class=4, size=(40, 40)),
            one=make_folder(root / "one", ("a",), per_class=6, size=(40, 40)),
            ckpt=root / "m.safetensors",
            ev=root / "ev",
            run=root / "run",
            bad=root / "bad",
        )
        model = init_weights(tiny("A", num_classes=3), "glorot")
        save_weights(
            w.ckpt,
            model,
            dict(classes=["a", "b", "c"], preprocessing=PRE, train=dict(scale=[32, 40], crop=32)),
        )
        from vggnet.eval.runner import evaluate

        evaluate(w.ckpt, w.data, ["center", "dense"], out=w.ev)
        assert main([str(a) for a in train_args(w.data, w.run)]) == 0
        _bad_inputs(w)
        return w
    finally:
        os.umask(mask)


def _bad_inputs(w):
    b = w.bad
    b.mkdir()
    rng = np.random.default_rng(0)
    ckpt = w.ckpt.read_bytes()
    (b / "random.safetensors").write_bytes(rng.bytes(300))
    (b / "truncated.safetensors").write_bytes(ckpt[: len(ckpt) // 2])
    (b / "garbage.pth").write_bytes(b"garbage" * 20)
    (b / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not the rest of a JPEG")
    meta = vggnet_meta(w.ckpt)
    rewrite_meta(w.ckpt, b / "meta-list.safetensors", [1, 2])
    rewrite_meta(w.ckpt, b / "meta-deep.safetensors", "[" * 100_000 + "]" * 100_000)
    rewrite_meta(w.ckpt, b / "meta-dropout.safetensors", dict(meta, model=dict(meta["model"], dropout=7)))
    rewrite_meta(w.ckpt, b / "meta-classes.safetensors", dict(meta, classes=["a", "a", "b"]))
    rewrite_meta(
        w.ckpt, b / "meta-scale.safetensors", dict(meta, train=dict(meta["train"], scale=[100_000] * 2))
    )
    # Metadata claiming the largest net the bounds allow (tens of GB of weights) over tiny tensors.
    rewrite_meta(
        w.ckpt,
        b / "meta-huge.safetensors",
        dict(
            meta,
            classes=[str(i) for i in range(100_000)],
            model=dict(arch="E", num_classes=100_000, width=16, fc_dim=65_536, crop_size=4096),
        ),
    )
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(w.ckpt))
    tensors["features.0.weight"][0, 0, 0, 0] = float("nan")
    save_file(tensors, str(b / "nan.safetensors"), metadata={"vggnet": json.dumps(meta)})
    for name, text in (
        ("damaged", '{"epoch": 1, "lr": 0.01, "train_loss": 1.0}\n{"epoch": 2, "lr'),
        ("wrongtype", '{"epoch": 1, "lr": "x", "train_loss": [1]}\n'),
        ("nan", '{"epoch": 1, "lr": 0.01, "train_loss": NaN}\n'),
    ):
        (b / f"log-{name}").mkdir()
        (b / f"log-{name}" / "log.jsonl").write_text(text)
    for name, text in (
        ("list", "[1, 2]"),
        ("missing", '{"protocols": {"dense": {}}}'),
        ("deep", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        ("notjson", "{bad"),
        ("scale", '{"protocols": {"dense": {"top1_err": 1, "top5_err": 2}}, "train_scale": [1]}'),
    ):
        (b / f"res-{name}").mkdir()
        (b / f"res-{name}" / "results.json").write_text(text)
    (b / "post-random").mkdir()
    (b / "post-random" / "posteriors.safetensors").write_bytes(rng.bytes(200))
    (b / "latin1.yaml").write_bytes("recipe: caf\xe9\n".encode("latin-1"))
    (b / "intkey.yaml").write_text("1: 2\n")
    (b / "dup.yaml").write_text("arch: A\nlr: 0.01\narch: B\n")
    (b / "nested.yaml").write_text("lr: " + "[" * 20_000 + "]" * 20_000 + "\n")
    # A 457-byte alias bomb: nine levels of nine references expand to 9^9 strings.
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
    )
    (b / "bomb.yaml").write_text(bomb)
    (b / "stats-junk.json").write_bytes(rng.bytes(100))
    (b / "stats-fields.json").write_text('{"mean_rgb": "x", "pca_eigval": 1, "pca_eigvec": 2}')
    (b / "table.csv").write_text("my,own,table\n")
    (b / "user.classes.txt").write_text("keep\n")
    (b / "evres").mkdir()
    shutil.copy(w.ev / "results.json", b / "evres" / "results.json")
    (b / "evweights").mkdir()
    shutil.copy(w.ckpt, b / "evweights" / "posteriors.safetensors")
    (b / "notempty").mkdir()
    (b / "notempty" / "mine.txt").write_text("keep")


# -- every command, bad input of every class: refused in one line, nothing touched -----------------
# (id, argv of world w, what the line must say, a path that must not come to exist)
NO = None
CASES = [
    # 1. tracebacks instead of messages
    (
        "convert-random",
        lambda w: ["convert", w.bad / "random.safetensors", w.root / "x.pth"],
        "random.safetensors",
        NO,
    ),
    (
        "convert-truncated",
        lambda w: ["convert", w.bad / "truncated.safetensors", w.root / "x.pth"],
        "truncated.safetensors",
        NO,
    ),
    (
        "convert-not-a-state-dict",
        lambda w: ["convert", w.bad / "garbage.pth", w.root / "x.safetensors"],
        ["garbage.pth", "cannot read as a PyTorch state dict"],
        NO,
    ),
    ("convert-output-is-folder", lambda w: ["convert", w.ckpt, w.ev], ["ev", "is a folder"], NO),
    (
        "convert-metadata-not-object",
        lambda w: ["convert", w.bad / "meta-list.safetensors", w.root / "x.pth"],
        ["meta-list.safetensors", "JSON object"],
        NO,
    ),
    (
        "evaluate-metadata-bad-dropout",
        lambda w: ["evaluate", "--checkpoint", w.bad / "meta-dropout.safetensors", "--data", w.data],
        ["meta-dropout.safetensors", "dropout"],
        NO,
    ),
    (
        "evaluate-metadata-nested",
        lambda w: ["evaluate", "--checkpoint", w.bad / "meta-deep.safetensors", "--data", w.data],
        ["meta-deep.safetensors", "nested"],
        NO,
    ),
    (
        "plot-damaged-log",
        lambda w: ["plot", w.bad / "log-damaged", "--out", w.root / "x.png"],
        "log.jsonl:2",
        NO,
    ),
    (
        "plot-log-wrong-types",
        lambda w: ["plot", w.bad / "log-wrongtype", "--out", w.root / "x.png"],
        ["log.jsonl:1", "lr"],
        NO,
    ),
    (
        "plot-log-nan",
        lambda w: ["plot", w.bad / "log-nan", "--out", w.root / "x.png"],
        ["log.jsonl:1", "train_loss"],
        NO,
    ),
    ("train-negative-seed", lambda w: train_args(w.data, w.root / "t", "--seed", "-1"), "seed", "t"),
    ("train-negative-workers", lambda w: train_args(w.data, w.root / "t", "--workers", "-3"), "workers", "t"),
    ("check-negative-workers", lambda w: ["data", "check", w.data, "--workers", "-1"], "--workers", NO),
    (
        "evaluate-missing-cuda",
        lambda w: ["evaluate", "--checkpoint", w.ckpt, "--data", w.data, "--device", "cuda:99"],
        "CUDA",
        NO,
    ),
    (
        "train-recipe-not-utf8",
        lambda w: train_args(w.data, w.root / "t", "--config", w.bad / "latin1.yaml"),
        ["latin1.yaml", "UTF-8"],
        "t",
    ),
    (
        "train-recipe-integer-key",
        lambda w: train_args(w.data, w.root / "t", "--config", w.bad / "intkey.yaml"),
        "intkey.yaml",
        "t",
    ),
    (
        "train-recipe-duplicate-key",
        lambda w: train_args(w.data, w.root / "t", "--config", w.bad / "dup.yaml"),
        ["dup.yaml", "'arch'", "lines 1 and 3"],
        "t",
    ),
    ("report-results-list", lambda w: ["report", w.bad / "res-list"], "res-list/results.json", NO),
    (
        "report-results-missing-fields",
        lambda w: ["report", w.bad / "res-missing"],
        ["res-missing/results.json", "dense"],
        NO,
    ),
    ("report-results-not-json", lambda w: ["report", w.bad / "res-notjson"], "res-notjson/results.json", NO),
    (
        "report-results-bad-scale",
        lambda w: ["report", w.bad / "res-scale"],
        ["res-scale/results.json", "train_scale"],
        NO,
    ),
    (
        "report-results-nested",
        lambda w: ["report", w.bad / "res-deep"],
        ["res-deep/results.json", "nested"],
        NO,
    ),
    ("fuse-random-posteriors", lambda w: ["fuse", w.bad / "post-random"], "posteriors.safetensors", NO),
    (
        "stats-of-a-jpeg",
        lambda w: ["stats", w.bad / "photo.jpg", "--out", w.root / "s.json"],
        "photo.jpg",
        NO,
    ),
    ("unknown-command", lambda w: ["nope"], "nope", NO),
    # 2. results overwritten
    (
        "fuse-onto-evaluation",
        lambda w: ["fuse", w.ev, "--out", w.ev],
        ["posteriors.safetensors", "exists"],
        NO,
    ),
    (
        "stats-onto-checkpoint",
        lambda w: ["stats", w.data, "--out", w.run / "best.safetensors"],
        "best.safetensors",
        NO,
    ),
    (
        "stats-onto-checkpoint-force",
        lambda w: ["stats", w.data, "--out", w.run / "best.safetensors", "--force"],
        "even with --force",
        NO,
    ),
    (
        "stats-onto-stats",
        lambda w: ["stats", w.data, "--out", w.run / "stats.json"],
        ["stats.json", "--force"],
        NO,
    ),
    (
        "plot-onto-weights-force",
        lambda w: ["plot", w.run, "--out", w.ckpt, "--force"],
        ["m.safetensors", "not a PNG"],
        NO,
    ),
    ("report-onto-results", lambda w: ["report", w.ev, "--out", w.ev / "results.json"], "results.json", NO),
    ("report-beside-users-csv", lambda w: ["report", w.ev, "--out", w.bad / "table.md"], "table.csv", NO),
    (
        "evaluate-onto-evaluation",
        lambda w: ["evaluate", "--checkpoint", w.ckpt, "--data", w.data, "--out", w.ev],
        "exists",
        NO,
    ),
    (
        "evaluate-onto-results-only",
        lambda w: ["evaluate", "--checkpoint", w.ckpt, "--data", w.data, "--out", w.bad / "evres"],
        "results.json",
        NO,
    ),
    (
        "evaluate-onto-weights-force",
        lambda w: [
            "evaluate",
            "--checkpoint",
            w.ckpt,
            "--data",
            w.data,
            "--out",
            w.bad / "evweights",
            "--force",
        ],
        "not a posteriors",
        NO,
    ),
    (
        "convert-onto-weights",
        lambda w: ["convert", w.ckpt, w.run / "best.safetensors", "--to", "torchvision"],
        "best.safetensors",
        NO,
    ),
    ("convert-onto-users-classes", lambda w: ["convert", w.ckpt, w.bad / "user.pth"], "user.classes.txt", NO),
    (
        "synth-into-data",
        lambda w: ["data", "synth", "--out", w.data, "--classes", "1", "--per-class", "1"],
        "not empty",
        NO,
    ),
    ("demo-into-folder", lambda w: ["demo", "--out", w.bad / "notempty"], "not empty", NO),
    ("train-into-run", lambda w: train_args(w.data, w.run), ["run", "not empty"], NO),
    ("train-into-file", lambda w: train_args(w.data, w.ckpt), "is a file", NO),
    # 3. a diverged checkpoint is not used
    (
        "evaluate-nan-weights",
        lambda w: ["evaluate", "--checkpoint", w.bad / "nan.safetensors", "--data", w.data],
        ["nan.safetensors", "not finite"],
        NO,
    ),
    (
        "convert-nan-weights",
        lambda w: ["convert", w.bad / "nan.safetensors", w.root / "x.pth"],
        "not finite",
        NO,
    ),
    # 4. checked before anything is written
    (
        "train-negative-init-std",
        lambda w: train_args(w.data, w.root / "t", "--init-std", "-1"),
        "init-std",
        "t",
    ),
    (
        "train-missing-init-from",
        lambda w: train_args(w.data, w.root / "t", "--init-from", w.root / "nope"),
        "nope",
        "t",
    ),
    (
        "train-unreadable-init-from",
        lambda w: train_args(w.data, w.root / "t", "--init-from", w.bad / "random.safetensors"),
        "random.safetensors",
        "t",
    ),
    (
        "train-stats-not-json",
        lambda w: train_args(w.data, w.root / "t", "--stats", w.bad / "stats-junk.json"),
        "stats-junk.json",
        "t",
    ),
    (
        "train-stats-bad-fields",
        lambda w: train_args(w.data, w.root / "t", "--stats", w.bad / "stats-fields.json"),
        "stats-fields.json",
        "t",
    ),
    (
        "train-missing-data-root",
        lambda w: train_args(w.data, w.root / "t", "--data-root", w.root / "nope"),
        "--data-root",
        "t",
    ),
    ("train-one-class", lambda w: train_args(w.one, w.root / "t"), "at least 2", "t"),
    ("demo-unknown-arch", lambda w: ["demo", "--out", w.root / "d", "--arch", "Z"], "'Z'", "d"),
    ("demo-one-class-data", lambda w: ["demo", "--out", w.root / "d", "--data", w.one], "at least 2", "d"),
    # 5. unbounded work
    (
        "evaluate-huge-scale",
        lambda w: ["evaluate", "--checkpoint", w.ckpt, "--data", w.data, "--scales", "100000"],
        "4096",
        NO,
    ),
    ("train-huge-scale", lambda w: train_args(w.data, w.root / "t", "--scale", "32:100000"), "4096", "t"),
    (
        "train-huge-val-scale",
        lambda w: train_args(w.data, w.root / "t", "--val-scale", "100000"),
        "4096",
        "t",
    ),
    (
        "train-alias-bomb",
        lambda w: train_args(w.data, w.root / "t", "--config", w.bad / "bomb.yaml"),
        ["bomb.yaml", "aliases"],
        "t",
    ),
    (
        "train-nested-recipe",
        lambda w: train_args(w.data, w.root / "t", "--config", w.bad / "nested.yaml"),
        ["nested.yaml", "nested"],
        "t",
    ),
    (
        "evaluate-metadata-huge-net",
        lambda w: ["evaluate", "--checkpoint", w.bad / "meta-huge.safetensors", "--data", w.data],
        ["meta-huge.safetensors", "do not match"],
        NO,
    ),
    (
        "evaluate-metadata-huge-scale",
        lambda w: ["evaluate", "--checkpoint", w.bad / "meta-scale.safetensors", "--data", w.data],
        ["meta-scale.safetensors", "train.scale"],
        NO,
    ),
    # 6. silent nonsense
    (
        "train-negative-steps",
        lambda w: train_args(w.data, w.root / "t", "--max-steps-per-epoch", "-1"),
        "max-steps-per-epoch",
        "t",
    ),
    (
        "synth-negative-val",
        lambda w: ["data", "synth", "--out", w.root / "s", "--val-per-class", "-1"],
        "--val-per-class",
        "s",
    ),
    (
        "evaluate-batch-zero",
        lambda w: ["evaluate", "--checkpoint", w.ckpt, "--data", w.data, "--batch-size", "0"],
        "--batch-size",
        NO,
    ),
    (
        "train-lr-factor-above-one",
        lambda w: train_args(w.data, w.root / "t", "--lr-factor", "1000"),
        "lr-factor",
        "t",
    ),
    (
        "train-weight-decay-nan",
        lambda w: train_args(w.data, w.root / "t", "--weight-decay", "nan"),
        "weight-decay",
        "t",
    ),
    ("train-lr-inf", lambda w: train_args(w.data, w.root / "t", "--lr", "inf"), "lr", "t"),
    (
        "evaluate-duplicate-classes",
        lambda w: ["evaluate", "--checkpoint", w.bad / "meta-classes.safetensors", "--data", w.data],
        ["meta-classes.safetensors", "twice"],
        NO,
    ),
    (
        "resume-other-settings",
        lambda w: train_args(w.data, w.run, "--resume", "--lr", "0.5"),
        ["lr", "0.5"],
        NO,
    ),
    (
        "resume-auto-other-settings",
        lambda w: train_args(w.data, w.run, "--resume", "auto", "--lr", "0.5"),
        ["--resume auto", "another run", "lr", "0.5"],
        NO,
    ),
    (
        "resume-auto-into-users-folder",
        lambda w: train_args(w.data, w.bad / "notempty", "--resume", "auto"),
        ["notempty", "holds no run"],
        NO,
    ),
    ("fuse-same-folder-twice", lambda w: ["fuse", w.ev, w.ev], ["same folder"], NO),
    ("fuse-same-folder-respelled", lambda w: ["fuse", w.ev, w.bad / ".." / "ev"], ["same folder"], NO),
]


@pytest.mark.parametrize("make_argv,says,absent", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_and_touches_nothing(world, capsys, make_argv, says, absent):
    before = snapshot(world.root)
    refused(capsys, *make_argv(world), says=says)
    assert snapshot(world.root) == before  # refused before the work: nothing it would write exists
    if absent:
        assert not (world.root / absent).exists()


def test_tensorboard_without_the_package_is_refused_before_work(world, capsys):
    try:
        import torch.utils.tensorboard  # noqa: F401

        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    refused(capsys, *train_args(world.data, world.root / "tb", "--tensorboard"), says="tensorboard")
    assert not (world.root / "tb").exists()


def test_debug_shows_the_traceback(world, capsys):
    with pytest.raises(VGGError, match="4096"):
        main(
            [
                "evaluate",
                "--checkpoint",
                str(world.ckpt),
                "--data",
                str(world.data),
                "--scales",
                "100000",
                "--debug",
            ]
        )


def test_data_check_reports_a_broken_jpeg_given_directly(world, capsys):
    rc, out, err = cli(capsys, "data", "check", world.bad / "photo.jpg", "--workers", "0")
    assert rc == 1 and "Traceback" not in err
    assert f"UNREADABLE {world.bad / 'photo.jpg'}" in out and "1 unreadable" in out


def test_metadata_claiming_a_huge_net_allocates_nothing(world, capsys):
    # The net it describes would take tens of GB; refused after the shapes are compared on a
    # storage-less skeleton, the process has grown by (far) less than that.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(
        capsys, "convert", world.bad / "meta-huge.safetensors", world.root / "huge.pth", says="do not match"
    )
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB


def test_worker_errors_keep_their_message_and_lose_the_traceback():
    class Failing(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise VGGError("/data/x.png: too large")

    with pytest.raises(VGGError) as caught:
        list(torch.utils.data.DataLoader(Failing(), batch_size=None, num_workers=1))
    assert "Traceback" in str(caught.value)  # what the DataLoader hands back ...
    assert describe(caught.value) == "/data/x.png: too large"  # ... and what the user reads


# -- faults: a full disk, a permission denied, a pipe closed ------------------------------------
def test_full_disk_at_a_checkpoint_names_it_and_keeps_the_last_one(world, tmp_path, capsys, monkeypatch):
    import safetensors.torch as st
    from safetensors import SafetensorError

    real, seen = st.save_file, {}

    def save_file(tensors, path, metadata=None):
        if Path(path).name.startswith(".last.safetensors."):
            seen["n"] = seen.get("n", 0) + 1
            if seen["n"] == 2:
                seen["before"] = (run / "last.safetensors").read_bytes()
                raise SafetensorError(
                    "Error while serializing: I/O error: No space left on device (os error 28)"
                )
        return real(tensors, path, metadata=metadata)

    run = tmp_path / "run"
    monkeypatch.setattr(st, "save_file", save_file)
    line = refused(
        capsys,
        *train_args(world.data, run, "--checkpoint-steps", "1"),
        says=[run / "last.safetensors", "No space left on device"],
    )
    assert "intact" in line
    assert (run / "last.safetensors").read_bytes() == seen["before"]
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(st, "save_file", real)
    rc, _, err = cli(capsys, *train_args(world.data, run, "--checkpoint-steps", "1", "--resume"))
    assert rc == 0, err
    assert all_finite(run / "final.safetensors")


def test_a_writer_failing_in_its_own_way_is_one_line_naming_the_file(world, tmp_path, capsys, monkeypatch):
    import vggnet.fileio

    def full_torch_save(obj, path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", full_torch_save)
    refused(capsys, "convert", world.ckpt, tmp_path / "x.pth", says=[tmp_path / "x.pth", "RuntimeError"])
    assert not (tmp_path / "x.classes.txt").exists()
    free = shutil.disk_usage(tmp_path)._replace(free=0)
    monkeypatch.setattr(vggnet.fileio.shutil, "disk_usage", lambda _: free)
    refused(
        capsys,
        "convert",
        world.ckpt,
        tmp_path / "y.pth",
        says=[tmp_path / "y.pth", "No space left on device"],
    )
    assert not (tmp_path / "x.pth").exists() and not (tmp_path / "y.pth").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_unwritable_output_is_refused_before_the_work(world, capsys, tmp_path):
    # sysfs refuses new files to every user, root included: the check tries, not only asks.
    if not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and _can_create("/sys"):
        pytest.skip("no read-only /sys here")
    refused(capsys, "stats", world.data, "--out", "/sys/vggnet-stats.json", says=["/sys", "ermission denied"])
    refused(
        capsys,
        "evaluate",
        "--checkpoint",
        world.ckpt,
        "--data",
        world.data,
        "--out",
        "/sys/vggnet-ev",
        says="/sys",
    )


def _can_create(folder) -> bool:
    try:
        Path(folder, ".vggnet-probe").touch()
    except OSError:
        return False
    Path(folder, ".vggnet-probe").unlink()
    return True


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_permission_denied_on_an_output_is_one_line(world, capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        refused(capsys, "stats", world.data, "--out", locked / "s.json", says=[locked, "permission denied"])
        refused(capsys, *train_args(world.data, locked / "run"), says=[locked, "ermission denied"])
    finally:
        locked.chmod(0o755)


def test_a_closed_pipe_ends_quietly():
    p = vggnet_process("info", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the table is printed, as `vggnet info | head -0`
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and err == ""


def test_outputs_have_the_usual_permissions(world, tmp_path, capsys):
    # 0666 less the umask, as any other program's files; not a temporary file's 0600.
    for mask, mode in ((0o022, 0o644), (0o027, 0o640)):
        os.umask(mask)
        out = tmp_path / f"m{mask:o}"
        assert cli(capsys, "stats", world.data, "--out", out / "s.json", "--workers", "0")[0] == 0
        assert (
            cli(capsys, "evaluate", "--checkpoint", world.ckpt, "--data", world.data, "--out", out / "ev")[0]
            == 0
        )
        assert cli(capsys, "convert", world.ckpt, out / "tv.pth")[0] == 0
        assert cli(capsys, "plot", world.run, "--out", out / "c.png")[0] == 0
        for f in (
            "s.json",
            "ev/results.json",
            "ev/posteriors.safetensors",
            "tv.pth",
            "tv.classes.txt",
            "c.png",
        ):
            assert (out / f).stat().st_mode & 0o777 == mode, (f, oct((out / f).stat().st_mode))
    os.umask(0o022)
    for f in ("config.yaml", "stats.json", "last.safetensors", "best.safetensors", "final.safetensors"):
        assert (world.run / f).stat().st_mode & 0o777 == 0o644, f


def test_stale_temporary_files_of_a_killed_write_are_removed(world, tmp_path, capsys):
    (tmp_path / ".s.json.abc123.tmp").write_bytes(b"half a file")
    assert cli(capsys, "stats", world.data, "--out", tmp_path / "s.json", "--workers", "0")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


# -- a diverging run ----------------------------------------------------------------------------
def _state(path):
    s = vggnet_meta(path)["train_state"]
    return s["epoch"], s["step"]


def _claims(line: str):
    """What the message says the last checkpoint holds, as (epoch, step) of the training state."""
    import re

    if "no checkpoint had been written yet" in line:
        return None
    m = re.search(r"as it was after (?:epoch (\d+)|step (\d+) of epoch (\d+))", line)
    assert m, line
    return (int(m[1]), 0) if m[1] else (int(m[3]) - 1, int(m[2]))


def test_a_diverging_run_keeps_only_finite_checkpoints_and_says_what_they_hold(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    meta = vggnet_meta(run / "last.safetensors")
    meta["train_state"]["schedule"]["lr"] = 1e12  # a learning rate no run survives
    rewrite_meta(run / "last.safetensors", run / "last.safetensors", meta)
    before = snapshot(run)
    line = refused(capsys, *train_args(world.data, run, "--resume", "--epochs", "3"), says="not finite")
    assert snapshot(run) == before
    assert _claims(line) == _state(run / "last.safetensors") == (1, 0)
    for f in run.glob("*.safetensors"):
        assert all_finite(f), f.name


def test_lr_10_with_a_checkpoint_every_step_never_writes_nan(world, tmp_path, capsys):
    run = tmp_path / "run"
    rc, _, err = cli(
        capsys, *train_args(world.data, run, "--lr", "10", "--epochs", "3", "--checkpoint-steps", "1")
    )
    assert rc in (0, 2) and "Traceback" not in err
    if rc == 2:
        line = one_line(err)
        assert "diverged" in line
        claimed = _claims(line)
        assert claimed == (_state(run / "last.safetensors") if (run / "last.safetensors").exists() else None)
    for f in run.glob("*.safetensors"):
        assert all_finite(f), f.name


def test_resuming_a_checkpoint_with_nan_weights_is_refused(world, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    tensors, meta = load_file(str(run / "last.safetensors")), vggnet_meta(run / "last.safetensors")
    tensors["classifier.6.bias"][0] = float("inf")
    save_file(tensors, str(run / "last.safetensors"), metadata={"vggnet": json.dumps(meta)})
    refused(
        capsys,
        *train_args(world.data, run, "--resume", "--epochs", "2"),
        says=["last.safetensors", "classifier.6.bias", "not finite"],
    )


@pytest.mark.parametrize(
    "edit,says",
    [
        (lambda s: s["schedule"].update(lr=-1.0), "schedule"),
        (lambda s: s["schedule"].update(bogus=1), "schedule"),
        (lambda s: s.update(history="x"), "history"),
        (lambda s: s.update(epoch=-1), "epoch"),
    ],
)
def test_a_damaged_training_state_is_refused_by_name(world, tmp_path, capsys, edit, says):
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    meta = vggnet_meta(run / "last.safetensors")
    edit(meta["train_state"])
    rewrite_meta(run / "last.safetensors", run / "last.safetensors", meta)
    refused(
        capsys, *train_args(world.data, run, "--resume", "--epochs", "2"), says=["last.safetensors", says]
    )


def test_no_readable_validation_image_is_an_error_not_a_perfect_score(world, tmp_path, capsys):
    val = tmp_path / "val"
    for c in ("a", "b", "c"):
        (val / c).mkdir(parents=True)
        (val / c / "x.png").write_bytes(b"\x89PNG but not really")
    refused(capsys, *train_args(world.data, tmp_path / "run", "--val-data", val), says="validation images")
    assert not (tmp_path / "run" / "best.safetensors").exists()


# -- run folders: resume, restart, lock, kill ---------------------------------------------------
def test_resume_knows_that_dot_slash_run_is_run(world, tmp_path, capsys):
    shutil.copytree(world.run, tmp_path / "run")
    shutil.copytree(world.data, tmp_path / "data")
    os.chdir(tmp_path)
    rewritten = dict(yaml_load(tmp_path / "run" / "config.yaml"), data="data", out="run")
    (tmp_path / "run" / "config.yaml").write_text(yaml_dump(rewritten))
    rc, _, err = cli(capsys, *train_args("./data", "./run", "--resume"))
    assert rc == 0 and "Traceback" not in err, err


def yaml_load(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())


def yaml_dump(d):
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def test_resume_without_config_yaml_compares_with_the_checkpoint(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    (run / "config.yaml").unlink()
    refused(capsys, *train_args(world.data, run, "--resume", "--arch", "B"), says=["arch", "'B'"])


def test_resume_auto_starts_a_run_then_continues_it(world, tmp_path, capsys):
    run = tmp_path / "run"
    rc, _, err = cli(capsys, *train_args(world.data, run, "--resume", "auto"))  # nothing there: a new run
    assert rc == 0, err
    rc, _, err = cli(capsys, *train_args(world.data, run, "--resume", "auto", "--epochs", "2"))  # its own: on
    assert rc == 0, err
    assert [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_a_run_ended_by_the_plateau_rule_stays_ended_when_resumed(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    meta = vggnet_meta(run / "last.safetensors")
    schedule = dict(meta["train_state"]["schedule"], drops=3, max_drops=3, patience=2, bad_epochs=3)
    rewrite_meta(
        world.run / "last.safetensors",
        run / "last.safetensors",
        dict(meta, train_state=dict(meta["train_state"], schedule=schedule)),
    )
    rc, out, err = cli(capsys, *train_args(world.data, run, "--resume", "auto", "--epochs", "3"))
    assert rc == 0 and "plateaued" in out, err
    assert len((run / "log.jsonl").read_text().splitlines()) == 1


def test_a_checkpoint_claiming_an_impossible_position_is_refused(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    meta = vggnet_meta(run / "last.safetensors")
    for state, says in (
        (dict(step=10**9), ["step 1,000,000,000", "steps ("]),
        (dict(epoch=5), ["claims 5 finished epochs but records 1"]),
    ):
        rewrite_meta(
            world.run / "last.safetensors",
            run / "last.safetensors",
            dict(meta, train_state=dict(meta["train_state"], **state)),
        )
        before = snapshot(run)
        refused(
            capsys,
            *train_args(world.data, run, "--resume", "--epochs", "2"),
            says=["last.safetensors", *says],
        )
        assert snapshot(run) == before


def test_a_signal_at_the_last_step_of_an_epoch_stops_before_its_validation_and_resumes_exactly(
    world, tmp_path, capsys, monkeypatch
):
    """Asked to stop at an epoch's last step, a run checkpoints its finished steps and leaves the
    epoch's validation (minutes on a real set) to the resumed run, rather than overrun a grace period."""
    engine = importlib.import_module("vggnet.engine.train")  # the package exports a function of that name
    rc, _, err = cli(capsys, *train_args(world.data, tmp_path / "ref", "--epochs", "2"))
    assert rc == 0, err
    step = engine.train_step

    def signalled_step(run, batch, epoch, i, sums):
        n = step(run, batch, epoch, i, sums)
        if (epoch, i) == (0, run.steps_per_epoch - 1):
            os.kill(os.getpid(), signal.SIGTERM)
        return n

    run = tmp_path / "run"
    monkeypatch.setattr(engine, "train_step", signalled_step)
    rc, _, err = cli(capsys, *train_args(world.data, run, "--epochs", "2"))
    assert rc == 130 and "interrupted: SIGTERM" in err, err
    state = vggnet_meta(run / "last.safetensors")["train_state"]
    assert state["epoch"] == 0 and state["step"] > 0 and not (run / "log.jsonl").exists()
    monkeypatch.setattr(engine, "train_step", step)
    rc, _, err = cli(capsys, *train_args(world.data, run, "--epochs", "2", "--resume", "auto"))
    assert rc == 0, err
    a, b = (load_model(p / "final.safetensors")[0].state_dict() for p in (tmp_path / "ref", run))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (run / "log.jsonl").read_text().count("\n") == 2


def test_checkpoint_minutes_bound_the_work_a_kill_loses(world, tmp_path, capsys, monkeypatch):
    engine = importlib.import_module("vggnet.engine.train")  # the package exports a function of that name
    saved, save = [], engine.save_last
    monkeypatch.setattr(engine, "save_last", lambda *a: saved.append((a[-1].epoch, a[-1].step)) or save(*a))
    for minutes, out in (("1e-9", "often"), ("1e6", "rarely")):
        saved.clear()
        rc, _, err = cli(capsys, *train_args(world.data, tmp_path / out, "--checkpoint-minutes", minutes))
        assert rc == 0, err
        mid_epoch = [s for s in saved if s[1]]
        assert saved[-1] == (1, 0) and (len(mid_epoch) >= 1 if out == "often" else not mid_epoch), saved


def test_several_processes_without_a_rendezvous_address_are_one_line(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    refused(capsys, *train_args(world.data, tmp_path / "run"), says=["MASTER_ADDR", "torchrun"])
    assert not (tmp_path / "run").exists()


def test_a_damaged_config_yaml_is_refused_by_name(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    (run / "config.yaml").write_text("- not\n- settings\n")
    refused(capsys, *train_args(world.data, run, "--resume"), says="config.yaml")


@pytest.mark.slow
def test_second_run_is_refused_and_a_run_killed_early_restarts_or_resumes(tmp_path, capsys):
    data = make_folder(tmp_path / "data", ("a", "b"), per_class=50, size=(40, 40))
    run = tmp_path / "run"
    args = train_args(data, run, "--epochs", "50", "--stats-max-images", "100")
    p = vggnet_process(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (run / "config.yaml").exists() or not (run / "run.lock").read_text().strip():
            assert p.poll() is None and time.time() < deadline, p.stderr.read()
            time.sleep(0.005)
        p.send_signal(signal.SIGSTOP)  # frozen before its first checkpoint, holding the folder's lock
        line = refused(
            capsys,
            *train_args(data, run, "--epochs", "1", "--stats-max-images", "100", "--resume"),
            says=["another vggnet train", f"pid {p.pid}"],
        )
        assert str(run) in line
    finally:
        p.kill()
        p.wait()
    assert not (run / "last.safetensors").exists(), "the run got past its first checkpoint; make it slower"
    shutil.copytree(run, tmp_path / "copy")
    rc, _, err = cli(capsys, *train_args(data, run, "--epochs", "1", "--stats-max-images", "100", "--resume"))
    assert rc == 0, err
    rc, _, err = cli(
        capsys, *train_args(data, tmp_path / "copy", "--epochs", "1", "--stats-max-images", "100")
    )
    assert rc == 0, err
    assert (run / "final.safetensors").is_file() and (tmp_path / "copy" / "final.safetensors").is_file()


def test_a_folder_left_before_the_first_checkpoint_can_be_restarted(world, tmp_path, capsys):
    # What a kill before the first checkpoint (or a refusal after the config was written) leaves.
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(world.run / "config.yaml", run)
    shutil.copy(world.run / "stats.json", run)
    (run / "run.lock").write_text("12345")
    (run / ".last.safetensors.abc.tmp").write_bytes(b"half")
    rc, _, err = cli(capsys, *train_args(world.data, run))
    assert rc == 0, err
    assert not list(run.glob(".*.tmp"))


# -- data commands on link loops, huge and odd images ------------------------------------------
@pytest.fixture()
def looped(tmp_path):
    root = make_folder(tmp_path / "loop", ("a", "b"), per_class=3, size=(40, 40))
    os.symlink("..", root / "a" / "up")  # a loop: a/up/a/up/...
    os.symlink(".", root / "b" / "self")  # a self-link
    return root


def test_data_check_on_a_link_loop_finishes_and_counts_each_image_once(looped):
    r = subprocess.run(
        [sys.executable, "-m", "vggnet", "data", "check", str(looped), "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert r.returncode == 0, r.stderr
    assert "checked 6 images: 6 readable" in r.stdout


def test_stats_and_evaluate_on_a_link_loop_finish(world, looped, tmp_path, capsys):
    def alarm(*_):
        raise TimeoutError("a data command did not finish on a link loop")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    try:
        rc, out, err = cli(capsys, "stats", looped, "--out", tmp_path / "s.json", "--workers", "0")
        assert rc == 0 and json.loads((tmp_path / "s.json").read_text())["images"] == 6, err
        model = init_weights(tiny("A", num_classes=2), "glorot")
        save_weights(tmp_path / "m.safetensors", model, dict(classes=["a", "b"], preprocessing=PRE))
        rc, out, err = cli(capsys, "evaluate", "--checkpoint", tmp_path / "m.safetensors", "--data", looped)
        assert rc == 0 and " 6 images" in out, err
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_1x30000_image_is_refused_at_test_time_not_allocated(world, tmp_path, capsys):
    data = make_folder(tmp_path / "d", ("a", "b", "c"), per_class=1, size=(40, 40))
    Image.new("RGB", (30000, 1), (1, 2, 3)).save(data / "a" / "strip.png")
    # refused from the header's size (the message names the rescaled pixel count), before decoding
    refused(
        capsys,
        "evaluate",
        "--checkpoint",
        world.ckpt,
        "--data",
        data,
        says=["strip.png", "24,000,000", "--skip-unreadable"],
    )
    rc, out, err = cli(capsys, "evaluate", "--checkpoint", world.ckpt, "--data", data, "--skip-unreadable")
    assert rc == 0 and "1 unreadable images excluded" in out, err


def test_colour_statistics_of_a_large_image_stay_small_in_memory(tmp_path):
    import tracemalloc

    from vggnet.data import compute_stats, image_folder

    write_image(tmp_path / "d" / "a" / "big.png", (2000, 2000), colour=(10, 20, 30))
    source = image_folder(tmp_path / "d")
    tracemalloc.start()
    try:
        compute_stats(source, workers=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40_000_000  # the picture is 12 MB; as float64 it would be 96 MB


def test_label_file_with_a_byte_order_mark_reads_right(world, tmp_path, capsys):
    (tmp_path / "labels.csv").write_bytes("\ufeffpath,label\na/a0.png,a\nb/b0.png,b\n".encode("utf-8"))
    rc, out, err = cli(
        capsys, "data", "check", tmp_path / "labels.csv", "--root", world.data, "--workers", "0"
    )
    assert rc == 0 and "checked 2 images: 2 readable" in out, err
    from vggnet.data.datasets import file_list

    s = file_list(tmp_path / "labels.csv", root=world.data)
    assert s.ids == ["a/a0.png", "b/b0.png"] and s.classes == ["a", "b"]


def test_an_unreadable_image_with_a_non_utf8_name_does_not_stop_training(world, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(world.data, data)
    name = os.path.join(os.fsencode(data / "a"), b"caf\xe9.jpg")  # Latin-1, not UTF-8
    try:
        with open(name, "wb") as f:
            f.write(b"\xff\xd8\xff not a JPEG")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    run = tmp_path / "run"
    stats = tmp_path / "stats.json"
    shutil.copy(world.run / "stats.json", stats)
    # One batch of all 13 images, so the file is met in every epoch.
    rc, out, err = cli(
        capsys,
        *train_args(
            data, run, "--epochs", "2", "--stats", stats, "--batch-size", "13", "--val-data", world.data
        ),
    )
    assert rc == 0 and "Traceback" not in err, err
    assert b"caf\xe9.jpg" in (run / "bad_images.txt").read_bytes()  # the name as it is on disk
    assert "unreadable skipped" in out


# -- meaning kept in transit --------------------------------------------------------------------
def test_export_and_import_keep_preprocessing_and_classes(world, tmp_path, capsys):
    from vggnet.eval.posteriors import load_posteriors

    assert cli(capsys, "convert", world.ckpt, tmp_path / "tv.pth")[0] == 0
    assert (tmp_path / "tv.classes.txt").read_text().split() == ["a", "b", "c"]
    rc, _, err = cli(capsys, "convert", tmp_path / "tv.pth", tmp_path / "back.safetensors")
    assert rc == 0, err
    _, meta = load_model(tmp_path / "back.safetensors")
    assert meta.classes == ["a", "b", "c"] and meta.preprocessing.value_range == 1.0
    for ckpt, out in ((world.ckpt, "e1"), (tmp_path / "back.safetensors", "e2")):
        assert (
            cli(
                capsys,
                "evaluate",
                "--checkpoint",
                ckpt,
                "--data",
                world.data,
                "--scales",
                "32",
                "--protocol",
                "center",
                "--out",
                tmp_path / out,
            )[0]
            == 0
        )
    a, b = (load_posteriors(tmp_path / e)["probs"]["center"] for e in ("e1", "e2"))
    assert (a - b).abs().max() < 0.01  # the fold is exact away from the one-pixel border


def test_warm_start_keeps_the_source_preprocessing(world, tmp_path, capsys):
    rc, _, err = cli(capsys, *train_args(world.data, tmp_path / "w", "--init-from", world.ckpt))
    assert rc == 0, err
    _, meta = load_model(tmp_path / "w" / "final.safetensors")
    assert meta.preprocessing.mean == tuple(PRE["mean"])
    refused(
        capsys,
        *train_args(
            world.data, tmp_path / "w2", "--init-from", world.ckpt, "--stats", world.run / "stats.json"
        ),
        says=["--init-from", "--stats"],
    )
    assert not (tmp_path / "w2").exists()


# -- also wrong once (read against the paper) -----------------------------------------------------
def test_lrn_is_the_papers_alpha_not_divided_by_the_window():
    # §2.1 (Krizhevsky et al.): b = a / (k + alpha * sum a^2)^beta, alpha = 1e-4, n = 5, k = 2;
    # PyTorch divides its alpha by n, so the module must hold 5e-4.
    net = tiny("A-LRN")
    lrn = next(m for m in net.modules() if isinstance(m, torch.nn.LocalResponseNorm))
    assert lrn.alpha == pytest.approx(5e-4) and lrn.size == 5 and lrn.k == 2 and lrn.beta == 0.75
    lrn = type(lrn)(5, lrn.size, lrn.alpha, lrn.beta, lrn.k)  # the same layer over 5 channels
    a = torch.zeros(1, 5, 1, 1)
    a[0, :, 0, 0] = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])
    window = 10**2 + 20**2 + 30**2  # channel 0 sees channels 0..2
    assert lrn(a)[0, 0, 0, 0].item() == pytest.approx(10 / (2 + 1e-4 * window) ** 0.75, rel=1e-5)


def test_demo_evaluates_exactly_the_images_it_held_out(tmp_path):
    from vggnet.data.datasets import file_list
    from vggnet.demo import _heldout_list, _split_user_data
    from vggnet.engine import load_config
    from vggnet.engine.config import RECIPES
    from vggnet.engine.run import open_data

    data = make_folder(tmp_path / "mine", ("b",), per_class=10, size=(40, 40))
    for i, name in enumerate((b"plain.png", b"caf\xe9.png", b"x,y.png")):  # not UTF-8; a comma: all travel
        try:
            write_image(data / "a" / os.fsdecode(name), seed=50 + i)
        except OSError:
            pass  # a file system that refuses the name
    train_dir, val_dir = _split_user_data(data)
    assert val_dir is None
    # 90% held out: all of class a (2 or 3 images) is.
    cfg = load_config(
        str(RECIPES / "demo.yaml"), dict(data=train_dir, out=str(tmp_path / "r"), val_fraction=0.9)
    )
    listed = file_list(_heldout_list(cfg, tmp_path), root=train_dir)
    trained, validated = open_data(cfg)
    assert sorted(listed.ids) == sorted(validated.ids) and not set(listed.ids) & set(trained.ids)
    assert "a/x,y.png" in listed.ids


def test_label_file_paths_are_file_names_and_labels_are_text(world, tmp_path):
    from vggnet.data.datasets import file_list

    try:
        write_image(tmp_path / os.fsdecode(b"caf\xe9.png"))
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    (tmp_path / "l.csv").write_bytes(b"caf\xe9.png,a\n")
    assert [Path(p).name for p, _ in file_list(tmp_path / "l.csv").samples] == [os.fsdecode(b"caf\xe9.png")]
    (tmp_path / "m.csv").write_bytes(b"caf\xe9.png,caf\xe9\n")
    with pytest.raises(VGGError, match=r"m.csv:1: the label is not UTF-8"):
        file_list(tmp_path / "m.csv")


def test_unreadable_images_do_not_shrink_the_gradient():
    # §3.1: each update is the gradient of the mean loss over the batch; an unreadable image is
    # left out, not counted as a zero that scales the gradient down by 3/4.
    from vggnet.data.loaders import collate_images
    from vggnet.data.transforms import Normalizer
    from vggnet.engine.objectives import Classification
    from vggnet.engine.train import train_step
    from vggnet.runtime.device import make_policy

    net = init_weights(tiny("A", num_classes=3, dropout=0.0), "glorot")
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    items = [dict(image=images[i], label=i, index=i, alpha=torch.zeros(3)) for i in range(3)]
    batch = collate_images(items + [dict(error=("x.jpg", "truncated"), index=3)])
    grads = {}

    class Recorder:
        def step(self):
            grads.update({k: p.grad.clone() for k, p in net.named_parameters()})

        def zero_grad(self, set_to_none=True):
            net.zero_grad(set_to_none=set_to_none)

    normalizer = Normalizer(PRE)
    run = SimpleNamespace(
        cfg=SimpleNamespace(seed=0, micro_batch=0, colour_shift=False),
        dist=SimpleNamespace(enabled=False, rank=0),
        local_batch=4,
        policy=make_policy(torch.device("cpu"), "off", "off"),
        model=net,
        net=net,
        normalizer=normalizer,
        objective=Classification(),
        optimizer=Recorder(),
    )
    sums = torch.zeros(2, dtype=torch.float64)
    assert train_step(run, batch, 0, 0, sums) == 3
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(normalizer(images)), torch.arange(3)).backward()
    for k, p in net.named_parameters():
        assert torch.allclose(grads[k], p.grad, atol=1e-6, rtol=1e-4), k


def test_colour_statistics_use_full_resolution_pixels(tmp_path):
    # A textured JPEG far larger than any training scale: decoded with DCT scaling it would be
    # blurred and its colour covariance smaller (§3.1's PCA colour shift would be too weak).
    from vggnet.data import compute_stats, image_folder
    from vggnet.data.stats import PIXELS_PER_IMAGE

    path = write_image(tmp_path / "d" / "a" / "noise.jpg", (1024, 1024), seed=1)
    stats = compute_stats(image_folder(tmp_path / "d"), workers=0)
    step = max(2, int(np.ceil(np.sqrt(1024 * 1024 / PIXELS_PER_IMAGE))))
    full = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)[::step, ::step].reshape(-1, 3)
    assert np.allclose(stats["cov_rgb"], np.cov(full.T, bias=True), rtol=1e-6)


def test_multi_scale_at_s_equal_to_crop_is_three_scales():
    from vggnet.data.transforms import Scale, default_scales

    for crop in (32, 224):
        qs = default_scales(Scale(crop, crop), crop, multi=True)
        assert len(qs) == 3 and qs[0] == crop and qs == sorted(set(qs))  # §4.2: three test scales


def test_no_progress_bar_frames_in_a_non_terminal_log(world, tmp_path, capsys):
    from vggnet.progress import bar, progress

    if sys.stderr.isatty():
        pytest.skip("stderr is a terminal")
    assert bar(10) is None and isinstance(progress(range(3)), range)
    args = train_args(world.data, tmp_path / "run")
    rc, out, err = cli(capsys, *[a for a in args if a != "--no-progress"])
    assert rc == 0 and "\r" not in out + err and "epoch   1" in out, err


def test_ddp_ranks_agree_on_stopping_whatever_step_the_signal_reaches_them():
    """A SIGTERM reaches rank 0 at step 13 and rank 1 at step 21, on both sides of step 20's flag
    reduction: both must stop at the same step, and every all-reduce must be joined by both (a
    rank alone in a collective would hang)."""
    from vggnet.engine.train import SYNC_EVERY, _agree

    barrier = threading.Barrier(2, timeout=10)
    box, decisions, calls = [None, None], [[], []], [0, 0]

    def rank(r, signal_at):
        def all_reduce_sum(t):
            calls[r] += 1
            box[r] = t.clone()
            barrier.wait()
            total = box[0] + box[1]
            barrier.wait()
            return total

        run = SimpleNamespace(
            cfg=SimpleNamespace(checkpoint_minutes=1e6, checkpoint_steps=0),
            dist=SimpleNamespace(enabled=True, device=torch.device("cpu"), all_reduce_sum=all_reduce_sum),
        )
        stop = SimpleNamespace(raised=None)
        for done in range(1, 41):
            if done == signal_at:
                stop.raised = "SIGTERM"
            save, stopping = _agree(run, stop, done, time.monotonic())
            decisions[r].append((done, save, stopping))
            if stopping:
                return

    threads = [threading.Thread(target=rank, args=(0, 13)), threading.Thread(target=rank, args=(1, 21))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert decisions[0] == decisions[1] and decisions[0][-1] == (2 * SYNC_EVERY, True, True)
    assert calls[0] == calls[1] == 2
