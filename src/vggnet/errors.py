"""User-facing errors.

Anything a user can cause (a bad name, an impossible setting, an unreadable file) raises
:class:`VGGError` with a message that says what is wrong and what would be valid. The CLI turns it
into one line on stderr and exit status 2: never a traceback.
"""


class VGGError(Exception):
    """An error caused by the user's input; its message is shown as is."""


def unknown(kind: str, name, valid) -> VGGError:
    """An error for an unknown name that lists the valid ones."""
    return VGGError(f"unknown {kind} {name!r}; valid: {', '.join(map(str, valid))}")
