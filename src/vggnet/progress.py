"""Progress bars on a terminal only: when stderr is a file (a log, CI), a bar's carriage-return
frames would fill it, so there is none (per-epoch lines and summaries are printed either way)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def shown(enabled: bool = True) -> bool:
    return bool(enabled) and sys.stderr.isatty()


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "img"):
    """`iterable`, with a bar when asked for and on a terminal."""
    if not shown(enabled):
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, mininterval=1.0)


def bar(total: int, initial: int = 0, desc: str = "", enabled: bool = True):
    """A bar updated by hand (``update(n)``), or None."""
    if not shown(enabled):
        return None
    return tqdm(
        total=total,
        initial=initial,
        unit="img",
        unit_scale=True,
        desc=desc,
        leave=False,
        dynamic_ncols=True,
        mininterval=1.0,
    )
