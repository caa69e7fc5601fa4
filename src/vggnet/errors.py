"""User-facing errors, and the one place where any failure becomes one line.

Anything a user can cause (a bad name, an impossible setting, an unreadable file) raises
:class:`VGGError` with a message that says what is wrong and what would be valid. The command
line's error boundary (``cli.main``) turns it -- and the failures the system meets without
raising it itself: a permission denied, a full disk, a folder where a file was expected, memory
running out -- into one line on stderr, ``vggnet COMMAND: error: ...``, and exit status 2. The
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import errno


class VGGError(ValueError):
    """An error caused by the user's input; its message is shown as is."""


def unknown(kind: str, name, valid) -> VGGError:
    """An error for an unknown name that lists the valid ones."""
    return VGGError(f"unknown {kind} {name!r}; valid: {', '.join(map(str, valid))}")


def _message(exc: BaseException) -> str:
    """The exception's own message. An exception raised in a DataLoader worker comes back with the
    worker's traceback inside its message; only the original message is kept."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    name, sep, rest = last.partition(": ")  # "vggnet.errors.VGGError: the message"
    return rest if sep and " " not in name else ""


def _os_error(e: OSError) -> str:
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    why = e.strerror or _message(e) or type(e).__name__
    if e.errno == errno.ENOSPC:
        why += " (the files written before are intact; free some space and rerun or --resume)"
    return f"{where}: {why}" if where else why


def describe(exc: BaseException) -> str:
    """One line that says what failed and why, for any exception."""
    if isinstance(exc, VGGError):
        text = _message(exc)
    elif isinstance(exc, OSError):
        text = _os_error(exc)
    elif isinstance(exc, MemoryError):
        text = "out of memory (use smaller inputs, scales or batches)"
    elif isinstance(exc, UnicodeError):
        text = f"text that is not valid UTF-8 ({_message(exc)})"
    elif isinstance(exc, RuntimeError) and "out of memory" in str(exc):
        text = "the device ran out of memory (use a smaller --batch-size or fewer/smaller scales)"
    else:
        text = f"unexpected {type(exc).__name__}: {_message(exc)} (rerun with --debug for the traceback)"
    return " ".join(text.split())
