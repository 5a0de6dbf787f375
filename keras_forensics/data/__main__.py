"""`python -m keras_forensics.data preview --out triplets.png [--data DIR] [--n 8] [--seed 0]`."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_forensics.data.preview import preview  # noqa: E402
from keras_forensics.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli({"preview": preview}, name="python -m keras_forensics.data")
