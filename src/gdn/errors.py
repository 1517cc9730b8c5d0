"""The one base class of the errors a user can fix, and how the CLI shows them.

Every module raises its own subclass (`ConfigError`, `AnnotationError`, `DecodeError`,
`CheckpointError`, ...), whose message names the file (and line or key) and what to do.
`gdn.cli.main` catches `GdnError` once for every command and prints the message as
`gdn COMMAND: error: ...` with the class's `exit_code`: 2 for input the user must fix, 1 for a
run that failed on its data (too many unreadable videos, a loss that blew up). A traceback
therefore always means a bug in gdn, never a mistake of the user's.
"""

from __future__ import annotations


class GdnError(Exception):
    """An error with a message meant for the user; `exit_code` is what the CLI returns."""

    exit_code = 2
    kind = "error"  # how the CLI introduces the message: "gdn train: error: ..."


class UsageError(GdnError, ValueError):
    """Arguments that cannot work together or a value out of range, found by a command."""


def user_message(error: BaseException) -> str:
    """The message of `error` without the wrapping a DataLoader worker adds.

    A `GdnError` raised in a loader worker reaches the main process as the same class with
    "Caught X in DataLoader worker process N. Original Traceback (most recent call last): ..."
    as its message: the user's line is the traceback's last one.
    """
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    name = type(error).__name__
    return last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last
