import pytest
import torch

from vggnet.models import create_model


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def tiny(name="A", num_classes=5, crop_size=32, **kw):
    """A tiny net of configuration `name`: width 1/16, fc_dim 32."""
    kw.setdefault("width", 1 / 16)
    kw.setdefault("fc_dim", 32)
    return create_model(name, num_classes, crop_size=crop_size, **kw)
