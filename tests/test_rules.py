"""Rules with one owner each: the test scales of every command, and what `loc train` takes from its
classifier (in the library, so that Python callers get it as the CLI does)."""

import dataclasses

import pytest

from conftest import tiny
from vggnet.data.transforms import MAX_SIDE, resolve_test_scales
from vggnet.engine.config import CHOICES, HELP, RANGES, TrainConfig, check_settings
from vggnet.errors import VGGError
from vggnet.localization.objective import LOC_DEFAULTS, box_config
from vggnet.models import WeightsMeta, save_weights
from vggnet.models.meta import TrainInfo
from vggnet.runtime.device import AMP_CHOICES


def test_test_scales_given_are_sorted_once_from_text_or_integers():
    assert resolve_test_scales("384,256,384", False, (256, 256), 224) == [256, 384]
    assert resolve_test_scales([512, 256], False, None, 224) == [256, 512]


def test_test_scales_default_from_the_training_scale_or_the_commands_own():
    assert resolve_test_scales(None, False, (256, 512), 224) == [384]  # §4.1: (Smin + Smax) / 2
    assert resolve_test_scales(None, True, (256, 256), 224) == [224, 256, 288]  # §4.2
    assert resolve_test_scales(None, False, None, 224, default=[512, 256]) == [256, 512]


@pytest.mark.parametrize(
    "scales, multi, match",
    [
        ("256", True, "not both"),
        ("16", False, "Q=16 is smaller than the crop size 32"),
        (str(MAX_SIDE + 1), False, "larger than"),
        ("256;384", False, "comma-separated"),
        ([256.5], False, "integers"),
    ],
)
def test_test_scales_refused(scales, multi, match):
    with pytest.raises(VGGError, match=match):
        resolve_test_scales(scales, multi, None, 32)


def classifier(tmp_path, scale=(40, 48)):
    net = tiny("A", 3, width=1 / 8, fc_dim=24, dropout=0.25)
    meta = WeightsMeta(net.spec, ["a", "b", "c"], train=TrainInfo(scale, 32))
    return save_weights(tmp_path / "cls.safetensors", net, meta)


def test_box_config_takes_the_classifiers_shape_and_scale(tmp_path):
    cfg = box_config(None, dict(init_from=str(classifier(tmp_path)), data="boxes.csv"))
    assert (cfg.objective, cfg.head, cfg.lr) == ("boxes", LOC_DEFAULTS["head"], LOC_DEFAULTS["lr"])
    assert (cfg.arch, cfg.width, cfg.fc_dim, cfg.crop, cfg.dropout) == ("A", 1 / 8, 24, 32, 0.25)
    assert (cfg.scale.lo, cfg.scale.hi) == (40, 48)


def test_box_config_flags_win_over_the_classifier(tmp_path):
    cfg = box_config(
        None, dict(init_from=str(classifier(tmp_path)), data="boxes.csv", scale="44", head="scr")
    )
    assert (cfg.scale.lo, cfg.scale.hi, cfg.head, cfg.arch) == (44, 44, "scr", "A")


def test_every_setting_is_declared_once_and_its_tables_follow():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(HELP) == set(fields) and all(HELP.values())
    for name, choices in CHOICES.items():
        assert choices == fields[name].metadata["choices"] and fields[name].default in choices
    assert CHOICES["amp"] == AMP_CHOICES  # the device policy owns its switches
    for name, (lo, hi, _, _) in RANGES.items():
        assert lo <= fields[name].default <= hi
    with pytest.raises(VGGError, match=r"lr must be in \(0, 10\]"):
        check_settings(TrainConfig(lr=0.0))


def test_the_python_api_trains_boxes_with_the_classifiers_shape(tmp_path, monkeypatch):
    import vggnet.api

    monkeypatch.setattr(vggnet.api, "run_training", lambda cfg: cfg)  # the config it would train with
    cfg = vggnet.api.train(
        "boxes.csv", tmp_path / "run", objective="boxes", init_from=str(classifier(tmp_path))
    )
    assert (cfg.head, cfg.fc_dim, cfg.dropout, cfg.scale.lo, cfg.scale.hi) == ("pcr", 24, 0.25, 40, 48)
