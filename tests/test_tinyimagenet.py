"""Tiny ImageNet-200's own layout, read directly and written to the project's CSV formats, on a
synthetic tree of the same layout (three classes, a few 64-px images)."""

import csv
import json
from pathlib import Path

import pytest

from helpers import write_image
from vggnet.cli import main
from vggnet.data.datasets import open_source
from vggnet.data.tinyimagenet import read_tiny_imagenet
from vggnet.engine import load_config, train
from vggnet.errors import VGGError
from vggnet.models import load_model

WNIDS = ["n02124075", "n04067472", "n01443537"]  # wnids.txt order is not sorted


def make_tiny(root: Path, per_class=6, val_per_class=2, unboxed=()) -> Path:
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS))  # no final newline, as in the real file
    (root / "words.txt").write_text(
        "n00001740\tentity\nn02124075\tEgyptian cat\nn04067472\treel\n"
        "n01443537\tgoldfish, Carassius auratus\n"
    )
    for c, wnid in enumerate(WNIDS):
        lines = []
        for k in range(per_class):
            write_image(
                root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", (64, 64), seed=10 * c + k, fmt="JPEG"
            )
            lines.append(f"{wnid}_{k}.JPEG\t{k}\t2\t{40 + k}\t63")
        if wnid not in unboxed:
            (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(lines) + "\n")
    rows = []
    for i in range(val_per_class * len(WNIDS)):
        write_image(root / "val" / "images" / f"val_{i}.JPEG", (64, 64), seed=100 + i, fmt="JPEG")
        rows.append(f"val_{i}.JPEG\t{WNIDS[i % len(WNIDS)]}\t0\t0\t63\t{31 + i}")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows))
    (root / "train" / ".DS_Store").write_text("x")  # a stray file beside the class folders
    return root


def test_reads_the_layout_with_boxes_made_max_exclusive(tmp_path):
    tiny = read_tiny_imagenet(make_tiny(tmp_path / "t"))
    assert tiny.classes == WNIDS and tiny.names["n01443537"] == "goldfish, Carassius auratus"
    assert len(tiny.train) == 18 and len(tiny.val) == 6
    first = next(a for a in tiny.train if a.path.endswith("n02124075_1.JPEG"))
    assert first.wnid == "n02124075" and first.box == (1.0, 2.0, 42.0, 64.0)  # inclusive 1..41 x 2..63
    assert tiny.val[1].wnid == WNIDS[1] and tiny.val[1].box == (0.0, 0.0, 64.0, 33.0)


def test_val_folder_is_a_labelled_source_and_the_root_is_refused(tmp_path):
    root = make_tiny(tmp_path / "t")
    val = open_source(root / "val")
    assert val.classes == sorted(WNIDS) and len(val) == 6
    assert [val.classes[label] for _, label in val.samples[:3]] == WNIDS
    train = open_source(root / "train")
    assert train.classes == sorted(WNIDS) and len(train) == 18
    again = open_source(root / "val", classes=train.classes)
    assert again.samples == val.samples
    with pytest.raises(VGGError, match="give .*train or .*val"):
        open_source(root)


@pytest.mark.parametrize(
    "where,line,says",
    [
        ("val/val_annotations.txt", "val_0.JPEG\tn02124075\t0\t0\t63", "val_annotations.txt:1: expected 6"),
        (
            "val/val_annotations.txt",
            "val_0.JPEG\tn02124075\t0\tx\t63\t9",
            "val_annotations.txt:1: expected four integer",
        ),
        (
            "val/val_annotations.txt",
            "val_0.JPEG\tn99999999\t0\t0\t63\t9",
            "val_annotations.txt:1: class n99999999",
        ),
        (
            "val/val_annotations.txt",
            "val_0.JPEG\tn02124075\t9\t0\t3\t9",
            "val_annotations.txt:1: box corners",
        ),
        (
            "train/n02124075/n02124075_boxes.txt",
            "n02124075_0.JPEG\t0\t0\t63",
            "n02124075_boxes.txt:1: expected 5",
        ),
    ],
)
def test_malformed_annotation_lines_are_refused_with_file_and_line(tmp_path, where, line, says):
    root = make_tiny(tmp_path / "t")
    path = root / where
    rest = path.read_text().splitlines()[1:]
    path.write_text("\n".join([line, *rest]) + "\n")
    with pytest.raises(VGGError, match=says):
        read_tiny_imagenet(root)


def test_images_the_annotations_do_not_name_and_names_without_images(tmp_path):
    root = make_tiny(tmp_path / "t")
    write_image(root / "val" / "images" / "val_99.JPEG", (64, 64), fmt="JPEG")
    with pytest.raises(VGGError, match="val_99.JPEG: not named in .*val_annotations.txt"):
        open_source(root / "val")
    (root / "val" / "images" / "val_99.JPEG").unlink()
    (root / "val" / "images" / "val_0.JPEG").unlink()
    with pytest.raises(VGGError, match="val_annotations.txt:1: names val_0.JPEG, which is not in"):
        read_tiny_imagenet(root)


def test_data_command_writes_lists_that_train_and_localisation_read(tmp_path, capsys):
    root = make_tiny(tmp_path / "t", unboxed=("n01443537",))
    assert main(["data", "tiny-imagenet", str(root), "--out", str(tmp_path / "lists")]) == 0
    out = capsys.readouterr().out
    assert "3 classes, 18 training and 6 validation" in out and "n01443537" in out
    rows = list(csv.reader(open(tmp_path / "lists" / "train-boxes.csv")))
    assert (
        rows[0] == ["path", "wnid", "xmin", "ymin", "xmax", "ymax"] and len(rows) == 1 + 12
    )  # unboxed left out
    assert len(list(csv.reader(open(tmp_path / "lists" / "train.csv")))) == 1 + 18
    assert "n04067472\treel" in (tmp_path / "lists" / "classes.tsv").read_text()
    src = open_source(tmp_path / "lists" / "val.csv", root=root)
    assert len(src) == 6 and src.classes == sorted(WNIDS)
    assert (
        main(["data", "tiny-imagenet", str(root), "--out", str(tmp_path / "lists")]) == 2
    )  # no silent replace
    assert "--force" in capsys.readouterr().err


def test_trains_on_the_layout_directly(tmp_path):
    root = make_tiny(tmp_path / "t")
    cfg = load_config(
        None,
        dict(
            arch="A",
            width=1 / 16,
            fc_dim=32,
            crop=32,
            scale="40",
            data=str(root / "train"),
            val_data=str(root / "val"),
            batch_size=6,
            epochs=1,
            workers=0,
            progress=False,
            out=str(tmp_path / "run"),
            stats_max_images=18,
        ),
    )
    assert train(cfg)["status"] == "done"
    _, meta = load_model(tmp_path / "run" / "final.safetensors")
    assert meta.classes == sorted(WNIDS)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["val_images"] == 6
