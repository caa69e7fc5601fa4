"""vggnet: the system of Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition" (ICLR 2015), end to end.

The Python API (see :mod:`vggnet.api`): ``vggnet.train``, ``vggnet.evaluate``,
``vggnet.create_model``, ``vggnet.load_model``, ``vggnet.create_transform``."""

__version__ = "0.1.0"

API = ("train", "evaluate", "create_model", "load_model", "create_transform")


def __getattr__(name):
    # The API is imported on first use: `import vggnet` (and so every command) starts without torch.
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'vggnet' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(API))
