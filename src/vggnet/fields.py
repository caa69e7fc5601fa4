"""Checked fields of the metadata documents read from files (weight headers, statistics): each
check names the file and the field of a value it refuses."""

from __future__ import annotations

import math

from .errors import VGGError


def fail(where, what) -> VGGError:
    return VGGError(f"{where}: metadata {what}" if where else f"metadata {what}")


def int_field(value, name, where, lo=1, hi=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"an integer >= {lo}" + (f" and <= {hi:,}" if hi is not None else "")
        raise fail(where, f"field {name!r} must be {bound}, got {value!r}")
    return value


def number_field(value, name, where, positive=False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (positive and value <= 0)
    ):
        raise fail(
            where, f"field {name!r} must be a finite{' positive' if positive else ''} number, got {value!r}"
        )
    return float(value)


def triple_field(value, name, where, positive=False) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise fail(where, f"field {name!r} must be 3 numbers (one per channel), got {value!r}")
    return tuple(number_field(v, name, where, positive) for v in value)
