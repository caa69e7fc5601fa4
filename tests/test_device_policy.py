"""The device policy reaches training: the process-wide backend switches of a run
(``--deterministic``) are set by the run itself, not only by the benchmark."""
import pytest
import torch

from vggnet.data.synth import make_synthetic
from vggnet.engine import load_config, train


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    make_synthetic(root / "d", classes=2, per_class=4, val_per_class=2, size=40, seed=1, workers=0)
    return root / "d"


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_setting_reaches_the_backends(synth, tmp_path, monkeypatch, deterministic):
    calls = []  # recorded, not applied: the switch is process-wide and other tests share the process
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, **kw: calls.append(mode))
    cfg = load_config(None, dict(arch="A", width=1 / 16, fc_dim=16, crop=32, scale="32", data=str(synth / "train"),
                                 val_data=str(synth / "val"), batch_size=4, epochs=1, workers=0, progress=False,
                                 out=str(tmp_path / "run"), stats_max_images=8, deterministic=deterministic))
    assert train(cfg)["status"] == "done"
    assert (True in calls) == deterministic
