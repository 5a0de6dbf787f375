"""`python -m keras_forensics.train <kind> [--flag value ...]`: train a model.

Every field of the experiment's config dataclass (keras_forensics/config.py) is a flag, nested
ones by their own name (`--p_jpeg 0.3`) or dotted (`--deformation.p_jpeg 0.3`). Re-running the same
command with the same --model_dir resumes from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_forensics import config as config_lib  # noqa: E402
from keras_forensics.errors import ForensicsError, run_cli  # noqa: E402


def _flag_help(cls) -> str:
    lines = []
    for field in dataclasses.fields(cls):
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default):
            for inner in dataclasses.fields(default):
                lines.append(f"    --{inner.name} (= {getattr(default, inner.name)!r}, in {field.name})")
        else:
            lines.append(f"    --{field.name} (= {default!r})")
    return "\n".join(lines)


def siamese(preset: str | None = None, model_dir: str | None = None, **flags):
    """Train the Siamese duplicate detector (Cicconet et al.) on triplets of deformed patches.

    Data: --data DIR[,DIR...] (default: the embedded sample micrographs). Writes model_dir
    (default runs/siamese/<timestamp>): config.json, split.json, checkpoints/, logs/ (TensorBoard),
    metrics.json and model.keras. --preset paper uses the paper's schedule (batch 256, ~5000
    steps, momentum); --preset quick is a few minutes long. Flags:
    """
    from keras_forensics.training import siamese as trainer

    config = config_lib.SiameseTrainConfig()
    if preset:
        if preset not in config_lib.SIAMESE_PRESETS:
            raise ForensicsError(f"unknown preset {preset!r} (known: {', '.join(config_lib.SIAMESE_PRESETS)})")
        config = config_lib.replace(config, **config_lib.SIAMESE_PRESETS[preset])
    config = config_lib.replace(config, **flags)
    return str(trainer.train(config, model_dir))


siamese.__doc__ += "\n" + _flag_help(config_lib.SiameseTrainConfig)

COMMANDS = {"siamese": siamese}


def main(argv=None):
    run_cli(COMMANDS, name="python -m keras_forensics.train", argv=argv)


if __name__ == "__main__":
    main()
