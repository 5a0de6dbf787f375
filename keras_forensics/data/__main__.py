"""`python -m keras_forensics.data preview --out triplets.png [--data DIR] [--n 8] [--seed 0]`."""

from keras_forensics.data.preview import preview
from keras_forensics.errors import run_cli

if __name__ == "__main__":
    run_cli({"preview": preview}, name="python -m keras_forensics.data")
