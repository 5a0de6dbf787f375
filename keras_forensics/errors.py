"""User-facing errors and the one place that turns them into a clean CLI exit."""

from __future__ import annotations

import os
import sys


class ForensicsError(Exception):
    """A mistake the user can fix (bad path, bad flag, unreadable file).

    The CLI prints its message as one line on stderr and exits with status 2; it never shows a
    traceback for these.
    """


class ImageReadError(ForensicsError):
    """A file that cannot be read as an image. The message always names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def run_cli(component, name: str | None = None, argv=None) -> None:
    """Run a python-fire CLI, turning ForensicsError into one line on stderr and exit code 2.

    Set KERAS_FORENSICS_DEBUG=1 to see the full traceback instead.
    """
    import fire

    argv = list(sys.argv[1:] if argv is None else argv)
    # Commands that take **flags would swallow --help as a flag; fire shows help after "--".
    if any(a in ("--help", "-h") for a in argv) and "--" not in argv:
        argv = [a for a in argv if a not in ("--help", "-h")] + ["--", "--help"]
    try:
        fire.Fire(component, name=name, command=argv)
    except ForensicsError as error:
        if os.environ.get("KERAS_FORENSICS_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
