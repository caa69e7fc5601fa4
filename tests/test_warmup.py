"""--lr-warmup: the rate rises linearly, step by step, over the first epochs, then the schedule
(plateau rule or milestones) takes over; the factor depends on the position alone, so a resumed
run continues the ramp where it stopped."""

import pytest
import torch

from helpers import make_folder
from vggnet.engine import load_config, train
from vggnet.engine.config import check_settings
from vggnet.engine.schedule import warmup_factor
from vggnet.errors import VGGError


def test_factor_rises_linearly_then_stays():
    assert [warmup_factor(1, 0, s, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_factor(1, 1, 0, 4) == 1.0
    assert [warmup_factor(2, e, s, 2) for e in (0, 1) for s in (0, 1)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_factor(0.5, 0, 0, 4) == 0.5 and warmup_factor(0.5, 0, 1, 4) == 1.0
    assert warmup_factor(0, 0, 0, 4) == 1.0


def _base(tmp_path, **kw):
    data = make_folder(tmp_path / "d", per_class=6, size=(40, 40))
    return dict(
        dict(
            arch="A",
            width=1 / 16,
            fc_dim=16,
            crop=32,
            scale="36",
            data=str(data),
            val_fraction=0.34,
            batch_size=6,  # 12 training images: 2 steps per epoch
            workers=0,
            progress=False,
            out=str(tmp_path / "run"),
            lr=0.04,
            lr_milestones="3",
            stats_max_images=12,
            amp="off",
        ),
        **kw,
    )


@pytest.fixture
def rates(monkeypatch):
    """The rate of every SGD update, as the optimizer saw it."""
    seen = []
    step = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    return seen


def test_training_ramps_then_follows_the_schedule(tmp_path, rates):
    train(load_config(None, _base(tmp_path, epochs=4, lr_warmup=2)))
    assert rates == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.04, 0.04, 0.004, 0.004])


def test_resume_continues_the_ramp(tmp_path, rates):
    base = _base(tmp_path, lr_warmup=2)
    train(load_config(None, dict(base, epochs=1)))
    train(load_config(None, dict(base, epochs=2, resume=True)))
    assert rates == pytest.approx([0.01, 0.02, 0.03, 0.04])


def test_no_warmup_by_default(tmp_path, rates):
    train(load_config(None, _base(tmp_path, epochs=1)))
    assert rates == pytest.approx([0.04, 0.04])


def test_negative_warmup_is_refused(tmp_path):
    with pytest.raises(VGGError, match=r"lr-warmup must be in \[0, 1,000\], got -1"):
        check_settings(load_config(None, _base(tmp_path, epochs=1, lr_warmup=-1)))
