"""The Python API: what ``vggnet train`` and ``vggnet evaluate`` do, as functions with keyword
arguments, beside the model functions (as timm and torchvision offer them)::

    import vggnet
    run = vggnet.train(data="train/", val_data="val/", out="runs/A", arch="A", scale="256:512")
    result = vggnet.evaluate(run["best_weights"], "val/", protocols=["center", "dense"], multi_scale=True)
    net, meta = vggnet.load_model(run["best_weights"])
    transform = vggnet.create_transform(meta)      # image -> the net's input at its test scale

Every setting has the name of its command-line flag with underscores (``--init-from`` ->
``init_from``) and is checked as the flag is; the results are the dicts the commands print.
"""

from __future__ import annotations

from .engine import load_config
from .engine import train as run_training
from .engine.config import resume_recipe
from .eval.runner import evaluate as run_evaluation
from .localization.objective import box_config  # also registers box regression with the loop
from .models import create_model, create_transform, load_model

__all__ = ["train", "evaluate", "create_model", "load_model", "create_transform"]


def train(
    data=None, out=None, *, config: str | None = None, val_data=None, resume: bool = False, **settings
) -> dict:
    """Train a net with the paper's recipe (§3.1), as ``vggnet train`` does.

    data: image folder (class sub-folders) or ``path,label`` CSV; out: the run folder (new, or the
    one to continue with ``resume=True``, whose config.yaml is then the recipe); config: a YAML
    recipe or a shipped recipe's name (``"table3-A-S256"``); val_data: validation data (default:
    ``val_fraction`` of `data` held out); settings: any other setting of
    :class:`vggnet.engine.TrainConfig` -- ``arch``, ``width``, ``fc_dim``, ``crop``, ``scale``
    (``256`` or ``"256:512"``), ``epochs``, ``lr``, ``batch_size``, ``init_from``, ``workers``,
    ``device``, ``seed``, ``progress`` ... (an unknown name is refused). ``objective="boxes"``
    trains Appendix A's box regressor from the classifier in ``init_from`` as ``vggnet loc train``
    does: with that classifier's shape and training scale unless given.

    Returns ``status`` ("done" or "interrupted"), ``epochs``, ``history`` (one dict per epoch),
    ``best`` (the best validation figures), ``best_weights``, ``final`` and ``run_dir``.
    """
    overrides = dict(settings, data=data, out=out, val_data=val_data, resume=resume or None)
    # App. A's box regressor (objective="boxes") takes its classifier's shape and scale, as `loc train` does
    make_config = box_config if settings.get("objective") == "boxes" else load_config
    return run_training(make_config(resume_recipe(config, out, resume), overrides))


def evaluate(
    checkpoint,
    data,
    protocols=("dense",),
    *,
    scales=None,
    multi_scale: bool = False,
    out=None,
    force: bool = False,
    data_root=None,
    device: str = "auto",
    workers: int = 0,
    batch_size: int = 32,
    progress: bool = False,
    **options,
) -> dict:
    """Evaluate weights under the paper's protocols (§3.2, §4), as ``vggnet evaluate`` does.

    checkpoint: a vggnet weight file; data: image folder or ``path,label`` CSV (paths relative to
    `data_root`, default its folder); protocols: any of ``center``, ``dense``, ``multicrop``,
    ``dense+multicrop``; scales: test scales Q (default: from the training scale, §4.1), or
    ``multi_scale=True`` for §4.2's three; out: a folder for the posteriors and results (for
    ``vggnet fuse`` and ``vggnet report``; ``force`` replaces them); options: the rest of
    :class:`vggnet.eval.runner.EvalOptions` (``half``, ``skip_unreadable``, ...).

    Returns ``protocols`` (per protocol: ``top1_err``, ``top5_err`` in %, ``per_scale``,
    ``images_per_s``), ``scales``, ``images``, ``arch``, ``train_scale`` and ``device``.
    """
    return run_evaluation(
        checkpoint,
        data,
        protocols,
        out=out,
        force=force,
        scales=scales,
        multi_scale=multi_scale,
        data_root=data_root,
        device=device,
        workers=workers,
        batch_size=batch_size,
        progress=progress,
        **options,
    )
