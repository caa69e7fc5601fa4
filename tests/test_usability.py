"""What a new user met in a first session: fused posteriors feed localisation, tables keep every
result, nonsense options are refused by name, loc train starts from its classifier's shape."""

import json

import pytest

from helpers import boxed_world
from vggnet.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return boxed_world(tmp_path_factory.mktemp("use"), seed=6)


def run(*argv):
    return main([str(a) for a in argv])


def test_loc_train_takes_its_classifiers_shape_and_scale_and_resumes_from_its_folder(world, capsys):
    out = world / "loc"
    assert (
        run(
            "loc",
            "train",
            "--data",
            world / "d/boxes-train.csv",
            "--val-data",
            world / "d/boxes-val.csv",
            "--init-from",
            world / "cls/best.safetensors",
            "--out",
            out,
            "--epochs",
            "1",
            "--workers",
            "0",
            "--batch-size",
            "8",
            "--no-progress",
        )
        == 0
    )
    import yaml

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (cfg["arch"], cfg["width"], cfg["crop"], cfg["scale"], cfg["head"], cfg["lr"]) == (
        "A",
        0.0625,
        32,
        "40",
        "pcr",
        0.03,
    )
    assert run("loc", "train", "--resume", "--out", out, "--epochs", "2", "--workers", "0") == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    # The first command again, as torchrun or a requeued job runs it: it continues the same run.
    assert (
        run(
            "loc",
            "train",
            "--data",
            world / "d/boxes-train.csv",
            "--val-data",
            world / "d/boxes-val.csv",
            "--init-from",
            world / "cls/best.safetensors",
            "--out",
            out,
            "--epochs",
            "3",
            "--workers",
            "0",
            "--batch-size",
            "8",
            "--no-progress",
            "--resume",
            "auto",
        )
        == 0
    )
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()


def test_fused_posteriors_give_localisation_its_classes(world, capsys):
    for name in ("e1", "e2"):
        assert (
            run(
                "evaluate",
                "--checkpoint",
                world / "cls/best.safetensors",
                "--data",
                world / "d/val",
                "--protocol",
                "dense",
                "--out",
                world / name,
                "--workers",
                "0",
            )
            == 0
        )
    assert run("fuse", world / "e1", world / "e2", "--out", world / "fused") == 0
    if not (world / "loc/best.safetensors").exists():
        pytest.skip("needs the loc net of the test above")
    val = world / "d/boxes-val.csv"
    assert (
        run(
            "loc",
            "evaluate",
            "--checkpoint",
            world / "loc/best.safetensors",
            "--data",
            val,
            "--posteriors",
            world / "fused",
            "--out",
            world / "le",
            "--gallery",
            "0",
            "--workers",
            "0",
        )
        == 0
    )
    assert json.loads((world / "le/results.json").read_text())["dense"]["top5_loc_err"] >= 0
    capsys.readouterr()
    for argv, words in (
        (
            [
                "loc",
                "evaluate",
                "--checkpoint",
                world / "loc/best.safetensors",
                "--data",
                val,
                "--threshold",
                "nan",
                "--posteriors",
                world / "fused",
            ],
            "--threshold",
        ),
        (
            [
                "loc",
                "evaluate",
                "--checkpoint",
                world / "loc/best.safetensors",
                "--data",
                val,
                "--posteriors",
                world / "fused",
                "--classifier",
                world / "cls/best.safetensors",
            ],
            "not both",
        ),
        (["loc", "merge", world / "le", "--data", val, "--tune", "--threshold", "0.3"], "not both"),
        (
            ["evaluate", "--checkpoint", world / "loc/best.safetensors", "--data", world / "d/val"],
            "loc evaluate",
        ),
        (
            [
                "evaluate",
                "--checkpoint",
                world / "cls/best.safetensors",
                "--data",
                world / "d/val",
                "--scales",
                "40",
                "--multi-scale",
            ],
            "not both",
        ),
    ):
        assert run(*argv) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err


def test_table11_keeps_two_results_of_one_setting(world, tmp_path, capsys):
    f = tmp_path / "f.safetensors"
    assert (
        run(
            "features",
            "--checkpoint",
            world / "cls/best.safetensors",
            "--data",
            world / "d/train",
            "--scales",
            "40",
            "--out",
            f,
            "--workers",
            "0",
        )
        == 0
    )
    for seed in ("0", "1"):
        assert (
            run(
                "transfer",
                f,
                "--train-per-class",
                "6",
                "--test-per-class",
                "4",
                "--splits",
                "1",
                "--seed",
                seed,
                "--out",
                tmp_path / f"t{seed}",
            )
            == 0
        )
    capsys.readouterr()
    assert run("report", tmp_path / "t0", tmp_path / "t1") == 0
    table = capsys.readouterr().out
    assert table.count("A fc7 Q=40") == 2
    for bad in ("abc", "1,,2", "nan", "-1"):
        assert run("transfer", f, "--C", bad) == 2
        assert "--C" in capsys.readouterr().err
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "results.json").write_text("{}")
    assert run("transfer", f, "--train-per-class", "6", "--splits", "1", "--out", tmp_path / "t2") == 2
    assert sorted(p.name for p in (tmp_path / "t2").iterdir()) == ["results.json"]  # nothing written first
