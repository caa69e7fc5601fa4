"""The device policy: bf16 autocast for CPU training and inference where the CPU's own flags say
it has native bf16, fp32 elsewhere and when asked; the choice recorded with the weights; a fixed
learning-rate schedule for equal comparisons."""

import json

import pytest
import torch

from helpers import make_folder
from vggnet.engine import load_config, train
from vggnet.engine.config import parse_milestones
from vggnet.engine.schedule import PlateauSchedule
from vggnet.errors import VGGError
from vggnet.models import load_model
from vggnet.runtime.device import cpu_native_bf16, make_policy

CPU = torch.device("cpu")
AMX = frozenset({"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"})
ZEN = frozenset({"avx512f", "avx512_bf16"})
OLD = frozenset({"avx2", "fma", "avx512f"})


def test_auto_chooses_bf16_from_the_cpu_flags_for_training_and_inference():
    # one policy for both: training and inference call make_policy the same way
    for flags, native in ((AMX, "amx_bf16"), (ZEN, "avx512_bf16"), (OLD, None)):
        policy = make_policy(CPU, "auto", "auto", flags=flags)
        assert cpu_native_bf16(flags) == native
        assert policy.amp is (native is not None) and policy.channels_last
        assert (native or "no native bf16") in policy.reason
    assert not make_policy(CPU, "off", "auto", flags=AMX).amp
    assert make_policy(CPU, "on", "auto", flags=OLD).amp  # asked for: emulated, but honoured
    assert make_policy(CPU, "bf16", "auto", flags=OLD).amp  # the older spelling in saved configs
    with pytest.raises(VGGError, match="amp"):
        make_policy(CPU, "fp16", "auto")


def test_policy_says_what_it_chose():
    policy = make_policy(CPU, "auto", "off", flags=ZEN)
    assert policy.describe() == "cpu, bf16 autocast (auto: CPU has avx512_bf16)"
    assert make_policy(CPU, "off", "on", flags=ZEN).describe() == "cpu, fp32, channels_last (--amp off)"


def test_bf16_training_keeps_fp32_weights_and_records_the_choice(tmp_path, capsys):
    data = make_folder(tmp_path / "d", per_class=6, size=(40, 40))
    cfg = load_config(
        None,
        dict(
            arch="A",
            width=1 / 16,
            fc_dim=32,
            crop=32,
            scale="36",
            data=str(data),
            val_fraction=0.34,
            batch_size=6,
            epochs=2,
            workers=0,
            progress=False,
            out=str(tmp_path / "run"),
            amp="on",
            stats_max_images=18,
        ),
    )
    assert train(cfg)["status"] == "done"
    assert "device cpu, precision bf16 autocast, channels_last (--amp on)" in capsys.readouterr().out
    model, meta = load_model(tmp_path / "run" / "final.safetensors")
    assert all(v.dtype == torch.float32 for v in model.state_dict().values() if v.is_floating_point())
    assert meta.train.precision == "bf16 autocast (--amp on)"
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["precision"] for r in log] == ["bf16 autocast"] * 2
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in log)


def test_fixed_milestones_drop_at_their_epochs_whatever_the_validation():
    s = PlateauSchedule(0.1, milestones=(2, 4))
    lrs = [s.step(err)["lr"] for err in (50, 40, 30, 20, 10)]  # improving every epoch: no plateau
    assert lrs == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])
    assert not any(s.step(e)["stop"] for e in (90, 90, 90, 90))  # the epoch cap ends training
    resumed = PlateauSchedule.from_state(s.state_dict(), (2, 4))
    assert resumed.epochs_seen == 9 and resumed.drops == 2 and resumed.lr == pytest.approx(0.001)


@pytest.mark.parametrize("text", ["6,x", "0,3", "9,6", "3,3"])
def test_bad_milestones_are_refused(text):
    with pytest.raises(VGGError, match="lr-milestones"):
        parse_milestones(text)


def test_milestones_train_and_resume(tmp_path):
    data = make_folder(tmp_path / "d", per_class=6, size=(40, 40))
    base = dict(
        arch="A",
        width=1 / 16,
        fc_dim=32,
        crop=32,
        scale="36",
        data=str(data),
        val_fraction=0.34,
        batch_size=6,
        workers=0,
        progress=False,
        out=str(tmp_path / "run"),
        lr=0.02,
        lr_milestones="1,2",
        stats_max_images=18,
        amp="off",
    )
    train(load_config(None, dict(base, epochs=2)))
    train(load_config(None, dict(base, epochs=3, resume=True)))
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx([0.02, 0.002, 0.0002])


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_setting_reaches_the_backends(tmp_path, monkeypatch, deterministic):
    """--deterministic is set by the run itself (configure_backends), not only by the benchmark."""
    calls = []  # recorded, not applied: the switch is process-wide and other tests share the process
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, **kw: calls.append(mode))
    data = make_folder(tmp_path / "d", per_class=4, size=(40, 40))
    cfg = load_config(
        None,
        dict(
            arch="A",
            width=1 / 16,
            fc_dim=16,
            crop=32,
            scale="32",
            data=str(data),
            val_fraction=0.34,
            batch_size=4,
            epochs=1,
            workers=0,
            progress=False,
            out=str(tmp_path / "run"),
            stats_max_images=8,
            deterministic=deterministic,
        ),
    )
    assert train(cfg)["status"] == "done"
    assert (True in calls) == deterministic
