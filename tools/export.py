"""Export a trained run to a versioned TF-Serving SavedModel.

    python tools/export.py siamese  --model_dir runs/siamese/shipped [--export_base saved_models] [--version N] [--overwrite]
    python tools/export.py detector --model_dir RUN_DIR ...
    python tools/export.py wgan     --model_dir RUN_DIR ...
    python tools/export.py cyclegan --model_dir RUN_DIR ...

Writes <export_base>/<kind>/<version>/ (default: the next version number) atomically, with
named signatures and TF-Serving warm-up requests, after checking the reloaded SavedModel against
the Keras model; prints the signatures as `saved_model_cli show --all` does. The work is done by
keras_forensics.serving.export; this file only parses the command line.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _command(kind: str):
    def export(model_dir: str, export_base: str = "saved_models", version: int | None = None,
               overwrite: bool = False, name: str | None = None):
        from keras_forensics.serving import export as exporting

        result = exporting.export(kind, model_dir, export_base=export_base, version=version,
                                  overwrite=overwrite, name=name)
        if kind in ("wgan", "cyclegan"):  # what `generate` and `evaluate wgan` need to know
            exporting.add_info(model_dir, result.path)
        return result.as_dict()

    export.__name__ = kind
    export.__doc__ = (f"Export a {kind} run dir to <export_base>/<name, default {kind}>/<version>/ "
                      "(--version default: the next number; --overwrite replaces an existing version).")
    return export


COMMANDS = {kind: _command(kind) for kind in ("siamese", "detector", "wgan", "cyclegan")}


def main(argv=None):
    from keras_forensics.errors import run_cli

    run_cli(COMMANDS, name="python tools/export.py", argv=argv)


if __name__ == "__main__":
    main()
