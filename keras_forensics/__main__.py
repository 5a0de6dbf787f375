"""`python -m keras_forensics <command> ...`: the toolkit's command line (python-fire).

Each command is a thin function here that imports its module only when it runs, so `--help` is
fast and every command's flags and documentation show in `python -m keras_forensics <command> --help`.
Commands return None, a path or a flat dict (fire prints it); user mistakes end with one line on
stderr and exit status 2.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_forensics.errors import run_cli  # noqa: E402

COMMANDS: dict = {}


def command(function):
    """Register a CLI command under its function name."""
    COMMANDS[function.__name__] = function
    return function


# Commands are registered below, one block per module (screening, detection, generation, serving).


def main(argv=None):
    run_cli(COMMANDS, name="python -m keras_forensics", argv=argv)


if __name__ == "__main__":
    main()
