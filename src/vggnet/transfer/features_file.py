"""Features files: the descriptors of one data set, cached so that SVM experiments, scale
combinations and net fusion never rerun a network.

One ``.safetensors`` file: a tensor ``scale/<Q>`` (N, D) float32 per test scale, ``labels`` ((N,)
int64 for single-label data, (N, C) int8 in {1, -1, 0} for multi-label data) and, in the header
under ``vggnet-features``, a JSON document: image ids (row order), class names, label kind, layer,
scales, the nets that produced the columns (checkpoint, architecture, layer, width D) and the data
path. Loading never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from ..errors import VGGError
from ..fileio import atomic_write, read_safetensors

FORMAT = "vggnet-features/1"
KEY = "vggnet-features"
META_FIELDS = ("ids", "classes", "label_kind", "layer", "scales", "nets", "data", "unreadable")


def save_features(path, features: dict, force: bool = False) -> Path:
    """Write `features` atomically; an existing file is replaced only with `force`."""

    path = Path(path)
    if path.exists() and not force:
        raise VGGError(f"{path} already exists; refusing to overwrite it (choose another path, or force)")
    tensors = {
        f"scale/{q}": np.ascontiguousarray(features["per_scale"][q], dtype=np.float32)
        for q in features["scales"]
    }
    kind = features["label_kind"]
    tensors["labels"] = np.ascontiguousarray(
        features["labels"], dtype=np.int8 if kind == "multi" else np.int64
    )
    meta = {k: features.get(k) for k in META_FIELDS}
    meta["format"] = FORMAT
    meta["scales"] = [int(q) for q in features["scales"]]
    if len(features["nets"]) == 1:  # provenance at the top level for the common one-net file
        meta["checkpoint"], meta["arch"] = (
            features["nets"][0].get("checkpoint"),
            features["nets"][0].get("arch"),
        )
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={KEY: json.dumps(meta)}))


def load_features(path) -> dict:
    """Read a features file, refusing anything else with a message that says what it is."""
    path = Path(path)
    header, tensors = read_safetensors(path, "features file", framework="np")
    if KEY not in header:
        what = "a weights file" if "vggnet" in header else "a safetensors file without features metadata"
        raise VGGError(f"{path}: not a features file ({what}); make one with `vggnet features`")
    meta = json.loads(header[KEY])
    if meta.get("format") != FORMAT:
        raise VGGError(f"{path}: features format {meta.get('format')!r} is not {FORMAT!r}")
    scales = [int(q) for q in meta["scales"]]
    absent = [q for q in scales if f"scale/{q}" not in tensors] + (
        ["labels"] if "labels" not in tensors else []
    )
    if absent:
        raise VGGError(f"{path}: damaged features file, missing tensors for {absent}")
    per_scale = {q: tensors[f"scale/{q}"] for q in scales}
    n = len(meta["ids"])
    width = sum(int(net["dim"]) for net in meta["nets"])
    for q, a in per_scale.items():
        if a.shape != (n, width):
            raise VGGError(
                f"{path}: damaged features file, scale/{q} has shape {a.shape}, expected {(n, width)}"
            )
    features = {k: meta.get(k) for k in META_FIELDS}
    features.update(per_scale=per_scale, scales=scales, labels=tensors["labels"], path=str(path))
    return features


def check_same_images(a: dict, b: dict, what: str = "stack") -> None:
    """Refuse two features sets that do not describe the same images, in the same order, with the
    same labels; the message names both files."""
    name_a, name_b = a.get("path") or "features 1", b.get("path") or "features 2"
    if a["ids"] != b["ids"]:
        if sorted(a["ids"]) == sorted(b["ids"]):
            why = "the same images in another order"
        else:
            only = sorted(set(a["ids"]) ^ set(b["ids"]))
            why = f"{len(a['ids'])} vs {len(b['ids'])} images, {len(only)} in only one (e.g. {only[0]})"
        raise VGGError(f"cannot {what} {name_a} and {name_b}: they describe different images ({why})")
    if (
        a["label_kind"] != b["label_kind"]
        or a["classes"] != b["classes"]
        or not np.array_equal(a["labels"], b["labels"])
    ):
        raise VGGError(f"cannot {what} {name_a} and {name_b}: same images but different classes or labels")


def stack_nets(feature_dicts, scales=None) -> dict:
    """Late fusion (Appendix B: D&E): the descriptors of several nets side by side, in the given
    order, per scale. The nets must share the images (same ids, order and labels) and the scales
    (all of them, or the ones listed in `scales`)."""
    feature_dicts = list(feature_dicts)
    if not feature_dicts:
        raise VGGError("no features to stack")
    first = feature_dicts[0]
    for other in feature_dicts[1:]:
        check_same_images(first, other)
    if scales is None:
        qs = list(first["scales"])
        for other in feature_dicts[1:]:
            if list(other["scales"]) != qs:
                raise VGGError(
                    f"cannot stack {first.get('path') or 'features 1'} (Q={qs}) and "
                    f"{other.get('path') or 'features 2'} (Q={other['scales']}): different "
                    f"scales; select common ones"
                )
    else:
        qs = sorted({int(q) for q in scales})
        for f in feature_dicts:
            missing = [q for q in qs if q not in f["per_scale"]]
            if missing:
                raise VGGError(
                    f"{f.get('path') or 'features'} has no descriptors at Q={missing} (it has {f['scales']})"
                )
    nets = []
    for f in feature_dicts:
        for net in f["nets"]:
            nets.append(dict(net, file=net.get("file") or f.get("path")))
    layers = [net["layer"] for net in nets]
    return dict(
        per_scale={q: np.concatenate([f["per_scale"][q] for f in feature_dicts], axis=1) for q in qs},
        scales=qs,
        ids=list(first["ids"]),
        classes=list(first["classes"]),
        labels=first["labels"],
        label_kind=first["label_kind"],
        layer=layers[0] if len(set(layers)) == 1 else "+".join(layers),
        nets=nets,
        data=first.get("data"),
        unreadable=first.get("unreadable") or [],
        path=" + ".join(str(f.get("path")) for f in feature_dicts),
    )


def subset_features(features: dict, indices) -> dict:
    """The same features restricted to rows `indices` (in that order)."""
    idx = np.asarray(list(indices), dtype=np.int64)
    return dict(
        features,
        per_scale={q: a[idx] for q, a in features["per_scale"].items()},
        ids=[features["ids"][i] for i in idx],
        labels=features["labels"][idx],
    )
