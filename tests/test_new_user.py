"""A new user's hour: the Python API (train, evaluate, the net's own transform), report rows that say
where they came from, the data split command, header and folder checks, messages that point the
right way, a run that starts by saying what it trains and ends without its lock."""

import contextlib
import csv
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import vggnet
from conftest import tiny
from helpers import make_folder, write_image
from vggnet.cli import main
from vggnet.data.boxfiles import read_box_csv
from vggnet.data.datasets import file_list, open_source, split_holdout
from vggnet.engine.plot import draw
from vggnet.errors import VGGError
from vggnet.eval import protocols
from vggnet.localization.report import loc_tables
from vggnet.models import create_model, init_weights, warm_start

NET = dict(
    arch="A",
    width=1 / 16,
    fc_dim=32,
    crop=32,
    scale="32:40",
    batch_size=6,
    workers=0,
    progress=False,
    init="glorot",
    dropout=0.0,
    val_fraction=0.2,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("newuser")
    data = make_folder(root / "data", ("a", "b", "c"), per_class=6, size=(40, 30))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = vggnet.train(data=str(data), out=str(root / "run"), epochs=2, **NET)
    return SimpleNamespace(root=root, data=data, result=result, printed=printed.getvalue())


def test_python_train_says_what_it_trains_first_and_leaves_no_lock(world):
    assert world.result["status"] == "done" and len(world.result["history"]) == 2
    lines = world.printed.splitlines()
    train, held = split_holdout(open_source(world.data), NET["val_fraction"], 0)
    net, _ = vggnet.load_model(world.result["best_weights"])
    params = sum(p.numel() for p in net.parameters())
    first = lines[0]
    for words in (
        f"on {len(train)} images of 3 classes",
        f"validating on {len(held)} images",
        f"{params:,} parameters",
        "net A",
        "device cpu",
        "precision ",
    ):
        assert words in first, first
    assert lines[1].startswith("epoch   1")
    assert not (world.root / "run" / "run.lock").exists()
    assert (world.root / "run" / "final.safetensors").is_file()


def test_the_nets_transform_is_what_evaluate_feeds_it(world, tmp_path, monkeypatch):
    image = world.data / "b" / "b2.png"
    (tmp_path / "one.csv").write_text(f"path,label\n{image},b\n")
    fed = []
    original = protocols.forward

    def spy(module, normalizer, policy, images):
        fed.append(normalizer(images).cpu())
        return original(module, normalizer, policy, images)

    monkeypatch.setattr(protocols, "forward", spy)
    result = vggnet.evaluate(
        world.result["best_weights"], str(tmp_path / "one.csv"), ["center"], workers=0, device="cpu"
    )
    assert result["images"] == 1 and len(fed) == 1
    _, meta = vggnet.load_model(world.result["best_weights"])
    transform = vggnet.create_transform(meta)
    assert transform.scale == result["scales"][0] == 36  # §4.1: the middle of the jittered S in [32, 40]
    as_tensor = torch.from_numpy(np.array(Image.open(image).convert("RGB"))).permute(2, 0, 1)
    for x in (transform(Image.open(image)), transform(image), transform(as_tensor), meta.transforms()(image)):
        assert x.shape == (3, 32, 32) and torch.equal(x, fed[0][0])
    with pytest.raises(VGGError, match="uint8 RGB"):
        transform(as_tensor.float())


def test_report_rows_name_their_run_in_markdown_and_csv(world, tmp_path, capsys):
    for name in ("e1", "e2"):
        vggnet.evaluate(
            world.result["best_weights"], str(world.data), ["center", "dense"], out=tmp_path / name
        )
    assert main(["report", str(tmp_path / "e1"), str(tmp_path / "e2"), "--out", str(tmp_path / "t.md")]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert len(rows) == 4 and {r["run"] for r in rows} == {str(tmp_path / "e1"), str(tmp_path / "e2")}
    assert len({tuple(r.values()) for r in rows}) == 4  # two runs of one setting: four distinct rows
    md = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert len(md) == 4 and len(set(md)) == 4
    assert sum(str(tmp_path / "e1") in line for line in md) == 2
    capsys.readouterr()


def _loc_result(run, data, err):
    return dict(
        kind="localisation",
        arch="A",
        head="pcr",
        finetune="all",
        train_scale=[40, 40],
        center_q=40,
        images=10,
        data=data,
        run=run,
        top_k=5,
        scales=[40],
        center={"gt_class_err": err, "whole_image_gt_class_err": err + 10, "mean_box_gt_class_err": err + 5},
        dense={"threshold": 0.0, "top1_loc_err": err, "top5_loc_err": err - 1},
        baselines={"whole image": {"top1_loc_err": err + 20, "top5_loc_err": err + 19}},
    )


def test_localisation_tables_name_the_run_and_the_data_of_each_baseline():
    results = [_loc_result("le1", "val-boxes.csv", 40.0), _loc_result("le2", "other-boxes.csv", 30.0)]
    rows = [r for r in csv.reader(io.StringIO(loc_tables(results, "csv"))) if r]
    tables = [i for i, r in enumerate(rows) if r[0] == "run"]
    assert len(tables) == 2  # Table 8, then Table 9, each with its run column
    for start, end in zip(tables, tables[1:] + [len(rows)]):
        body = rows[start + 1 : end]
        assert [r[0] for r in body].count("le1") >= 1 and [r[0] for r in body].count("le2") >= 1
        baselines = [r[0] for r in body if r[0].startswith("data: ")]
        assert "data: val-boxes.csv" in baselines and "data: other-boxes.csv" in baselines
        assert len({tuple(r) for r in body}) == len(body)
    one = loc_tables([dict(results[0], run=None)], "text")
    assert "run" not in one.splitlines()[1]  # results that name no folder: no run column


def _box_world(root, per_class=10):
    rows = ["path,wnid,xmin,ymin,xmax,ymax"]
    for c in ("n01", "n02", "n03"):
        for i in range(per_class):
            rel = f"img/{c}/{i}.png"
            write_image(root / rel, (20, 16), seed=i)
            rows += [f"{rel},{c},1,1,9,9"] + ([f"{rel},{c},2,2,12,12"] if i % 3 == 0 else [])
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    return root / "boxes.csv", rows[1:]


def _images(path):
    return {row.split(",")[0] for row in path.read_text().splitlines()[1:]}


def test_data_split_by_image_seeded_stratified_and_readable(tmp_path, capsys):
    boxes, rows = _box_world(tmp_path)
    out = tmp_path / "parts"
    argv = [
        "data",
        "split",
        str(boxes),
        "--val",
        "0.2",
        "--tune",
        "0.1",
        "--seed",
        "3",
        "--out-dir",
        str(out),
    ]
    assert main(argv) == 0
    parts = {n: out / f"boxes-{n}.csv" for n in ("train", "val", "tune")}
    said = capsys.readouterr().out
    assert all(str(p) in said for p in parts.values())
    sources = {n: read_box_csv(p) for n, p in parts.items()}  # paths rewritten relative to the parts' folder
    ids = {n: {im.path for im in s.images} for n, s in sources.items()}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["tune"] or ids["val"] & ids["tune"])
    assert len(set().union(*ids.values())) == 30
    # every box kept, once
    assert sum(len(p.read_text().splitlines()) - 1 for p in parts.values()) == len(rows)
    for s in sources.values():
        assert set(s.classes) == {"n01", "n02", "n03"}  # stratified: every class in every part
    assert (len(ids["val"]), len(ids["tune"])) == (6, 3)
    first = {n: p.read_text() for n, p in parts.items()}
    assert main(argv) == 2 and "exists" in capsys.readouterr().err  # nothing replaced without --force
    assert main(argv + ["--force"]) == 0 and {n: p.read_text() for n, p in parts.items()} == first  # seeded
    assert main(argv[:-4] + ["--seed", "4", "--out-dir", str(tmp_path / "other")]) == 0
    assert _images(tmp_path / "other" / "boxes-val.csv") != _images(parts["val"])
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "path,label\n" + "".join(f"img/{c}/{i}.png,{c}\n" for c in ("n01", "n02", "n03") for i in range(10))
    )
    assert main(["data", "split", str(labels), "--val", "0.3"]) == 0
    train, val = file_list(tmp_path / "labels-train.csv"), file_list(tmp_path / "labels-val.csv")
    assert (len(train), len(val)) == (21, 9) and not (tmp_path / "labels-tune.csv").exists()
    for bad in (["--val", "0.6", "--tune", "0.5"], ["--val", "0", "--tune", "0"]):
        assert main(["data", "split", str(labels), "--force"] + bad) == 2
        assert "--val and --tune" in capsys.readouterr().err


def test_label_file_header_is_read_by_name_and_checked(tmp_path):
    make_folder(tmp_path, ("a", "b"), per_class=2)
    body = ["a/a0.png,a", "b/b1.png,b"]
    for header in ("", "path,label\n", "filename,class\n"):
        (tmp_path / "l.csv").write_text(header + "\n".join(body) + "\n")
        assert [s[1] for s in file_list(tmp_path / "l.csv").samples] == [0, 1]
    (tmp_path / "l.csv").write_text("label,path\na,a/a0.png\nb,b/b1.png\n")  # columns by name, not position
    assert file_list(tmp_path / "l.csv").ids == ["a/a0.png", "b/b1.png"]
    (tmp_path / "l.csv").write_text("path,xmin\na/a0.png,1\n")
    with pytest.raises(VGGError, match="names no label column"):
        file_list(tmp_path / "l.csv")
    (tmp_path / "l.csv").write_text("img,cls\n" + "\n".join(body) + "\n")
    with pytest.raises(VGGError, match="neither an image .* nor a header"):
        file_list(tmp_path / "l.csv")


def test_stats_on_a_flat_folder_and_check_counts_images_once(tmp_path, capsys):
    for i in range(3):
        write_image(tmp_path / "flat" / f"{i}.png", seed=i)
    assert main(["stats", str(tmp_path / "flat"), "--out", str(tmp_path / "s.json"), "--workers", "0"]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["images"] == 3
    boxes, rows = _box_world(tmp_path / "b", per_class=2)
    assert len(rows) > 6
    assert main(["data", "check", str(boxes), "--workers", "0"]) == 0
    assert "checked 6 images: 6 readable" in capsys.readouterr().out


def test_messages_point_the_right_way(tmp_path, capsys):
    assert main(["train", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "no training data" not in err
    with pytest.raises(SystemExit) as e:
        main(["train", "--widht", "0.5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("vggnet train: error:") and "did you mean --width?" in err
    narrow = tiny("A", num_classes=3)  # width 1/16, FC 32
    wide = init_weights(create_model("D", 3, width=0.25, fc_dim=64, crop_size=32), "glorot")
    with pytest.raises(VGGError, match=r"--width 0\.0625 --fc-dim 32"):
        warm_start(wide, narrow)
    boxes, _ = _box_world(tmp_path / "b", per_class=2)
    moved = tmp_path / "elsewhere" / "boxes.csv"
    moved.parent.mkdir()
    moved.write_text(boxes.read_text())
    for on_bad in ("fail", "skip"):
        with pytest.raises(VGGError, match="--data-root"):
            read_box_csv(moved, on_bad=on_bad)
    assert len(read_box_csv(moved, root=boxes.parent).images) == 6


def test_loc_train_help_says_what_it_inherits(capsys):
    with pytest.raises(SystemExit):
        main(["loc", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("width", "crop", "fc-dim", "arch", "scale"):
        assert re.search(rf"--{flag} \S+ .*?\(default from --init-from\)", text), flag
    assert "(default 224)" not in text and "(default 1.0)" not in text
    assert "hold out --val-fraction) (default" not in text


def test_plot_ticks_whole_epochs():
    rows = [dict(epoch=e, lr=0.01, train_loss=2.0 - e / 2, val_top1_err=50.0 - e) for e in (1, 2)]
    fig = draw(rows)
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
