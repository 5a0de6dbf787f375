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


def debugging() -> bool:
    """KERAS_FORENSICS_DEBUG=1: tracebacks and TensorFlow's own logging are shown."""
    return os.environ.get("KERAS_FORENSICS_DEBUG", "") not in ("", "0")


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and Python logging off the CLI's stderr (unless `debugging()`).

    Importing TensorFlow writes a handful of C++ log lines (absl's "before InitializeLog",
    "Could not find cuda drivers", CPU features, "failed call to cuInit" on machines without a
    GPU) that read like failures. Some are written before TF_CPP_MIN_LOG_LEVEL is consulted, so
    TensorFlow is imported here with file descriptor 2 pointed at /dev/null, then stderr is back
    for the command's own messages; later C++ messages below errors are off by
    TF_CPP_MIN_LOG_LEVEL=3, and the Python loggers of TensorFlow and absl show errors only.
    """
    if debugging():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the device scan logs too
        except ImportError:
            pass  # the command's own import reports it, with stderr back
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def run_cli(component, name: str | None = None, argv=None) -> None:
    """Run a python-fire CLI, turning ForensicsError into one line on stderr and exit code 2.

    TensorFlow's logging is kept quiet (`quiet_tensorflow`). Set KERAS_FORENSICS_DEBUG=1 to see the
    full traceback and TensorFlow's logging instead.
    """
    import fire

    argv = list(sys.argv[1:] if argv is None else argv)
    # Commands that take **flags would swallow --help as a flag; fire shows help after "--".
    helping = any(a in ("--help", "-h") for a in argv) or not argv
    if any(a in ("--help", "-h") for a in argv) and "--" not in argv:
        argv = [a for a in argv if a not in ("--help", "-h")] + ["--", "--help"]
    if not helping:  # --help stays fast: it needs no TensorFlow
        quiet_tensorflow()
    try:
        fire.Fire(component, name=name, command=argv)
    except ForensicsError as error:
        if debugging():
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
