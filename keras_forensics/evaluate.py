"""`python -m keras_forensics.evaluate <kind> ...`: measure a trained model; prints and writes JSON."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_forensics.errors import run_cli  # noqa: E402

COMMANDS: dict = {}


def command(function):
    COMMANDS[function.__name__] = function
    return function


# One block per model kind below (siamese, detector, wgan).


def main(argv=None):
    run_cli(COMMANDS, name="python -m keras_forensics.evaluate", argv=argv)


if __name__ == "__main__":
    main()
