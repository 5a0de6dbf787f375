"""Exporting a run dir as a TF-Serving SavedModel: `export_base/<name>/<version>/`.

`export(kind, model_dir, export_base)` builds the kind's serving module (serving.modules), writes
it atomically (a temporary folder beside the target, then a rename; the temporary folders of
killed exports are removed once stale, `remove_stale_leftovers`), adds TF-Serving warm-up
requests in `assets.extra/tf_serving_warmup_requests`, and before the rename reloads the
SavedModel with `tf.saved_model.load` and checks every signature against the Keras model on a
fixed input. `export_generator` does the same for a WGAN / CycleGAN run and adds its
generator.json. `describe` prints the SignatureDefs as `saved_model_cli show --all` does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_forensics import artifacts
from keras_forensics.artifacts import existing_versions  # noqa: F401  (export.existing_versions)
from keras_forensics.errors import ForensicsError
from keras_forensics.serving.modules import ServingModule, load_serving_module

#: Where TF-Serving looks for warm-up requests inside a version folder.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

#: The reload check's tolerance: every output of every signature, max absolute difference.
TOLERANCE = 1e-5

#: A `.tmp-*` / `.old-*` folder beside the versions in which nothing changed for this long is the
#: leftover of a killed export: an export writes its temporary folder from start to end and
#: touches it before its reload check (seconds). An `.old-*` folder (the replaced version) is in
#: use only between two renames, after which its export removes it anyway.
STALE_AFTER_S = 10 * 60
_LEFTOVER_PREFIXES = (".tmp-", ".old-")


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote: the version folder, its version number and the reload check's errors."""

    path: Path
    version: int
    max_abs_diff: dict  # signature -> largest |SavedModel - Keras| over its outputs
    summary: str

    def as_dict(self) -> dict:
        """A flat dict for the CLI."""
        return {"path": str(self.path), "version": self.version,
                **{f"max_abs_diff_{name}": value for name, value in self.max_abs_diff.items()}}


def export(kind: str, model_dir, export_base="saved_models", version: int | None = None,
           overwrite: bool = False, name: str | None = None, verbose: bool = True,
           extra_assets: dict | None = None) -> ExportResult:
    """Export a run dir to `export_base/<name>/<version>/` (name defaults to the kind).

    Steps: build the serving module; save it with every named signature to a temporary folder
    beside the target; write the warm-up requests (and `extra_assets`, file name -> bytes or
    text, into assets.extra/); reload it with `tf.saved_model.load` and compare every signature
    with the Keras model on a fixed input (max abs diff < TOLERANCE); rename the folder into
    place. A failed check leaves nothing behind.

    Raises:
        ForensicsError: unknown kind, missing files, an existing version without `overwrite`,
            or a signature that does not reproduce the Keras model.
    """
    name = name or kind
    model_base = Path(export_base) / name
    if version is None:
        version = (existing_versions(model_base) or [0])[-1] + 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ForensicsError(f"--version must be a non-negative whole number, got {version!r}")
    target = model_base / str(version)
    if target.exists() and not overwrite:
        raise ForensicsError(f"{target} exists; pass --overwrite to replace it, or choose another --version")

    module = load_serving_module(kind, model_dir)
    model_base.mkdir(parents=True, exist_ok=True)
    remove_stale_leftovers(model_base)
    # A dot-folder beside the target: same file system (so the rename is atomic) and not a
    # number, so a server watching model_base never tries to load it.
    temporary = model_base / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    try:
        tf.saved_model.save(module, str(temporary), signatures=module.concrete_signatures())
        write_warmup_requests(temporary, name, {n: e.example for n, e in module.endpoints.items()})
        # the run's split travels with the model (which images it never saw: its test split), and
        # so does the descriptor's background set (screening.background: score normalisation)
        run_files = [Path(model_dir) / f for f in ("split.json", "background.npz")]
        assets = {f.name: f.read_bytes() for f in run_files if f.is_file()}
        for file_name, content in {**assets, **module.extra_assets(), **(extra_assets or {})}.items():
            data = content.encode() if isinstance(content, str) else bytes(content)
            (temporary / "assets.extra" / Path(file_name).name).write_bytes(data)
        os.utime(temporary)  # fresh for the reload check: another export must not take it for stale
        differences = check_saved_model(temporary, module)
        _move_into_place(temporary, target, overwrite)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    summary = describe(target)
    if verbose:
        print(summary, flush=True)
    return ExportResult(target, version, differences, summary)


def remove_stale_leftovers(model_base, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the `.tmp-*` and `.old-*` folders of killed exports from `model_base`: those in which
    nothing was modified for `older_than_s` seconds (a running export's folder is younger). A
    killed export's `finally` never ran, so its folders stayed forever. Returns what it removed."""
    import time

    model_base = Path(model_base)
    if not model_base.is_dir():
        return []
    now, removed = time.time(), []
    for folder in model_base.iterdir():
        if not folder.name.startswith(_LEFTOVER_PREFIXES) or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            newest = max([folder.lstat().st_mtime] + [path.lstat().st_mtime for path in folder.rglob("*")])
        except OSError:  # removed by another export meanwhile
            continue
        if now - newest >= older_than_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _move_into_place(temporary: Path, target: Path, overwrite: bool) -> None:
    if target.exists():
        if not overwrite:
            raise ForensicsError(f"{target} appeared during the export; not replacing it")
        retired = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
        os.replace(target, retired)  # then the new version takes its place in one rename
        os.replace(temporary, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(temporary, target)


def check_saved_model(path, module: ServingModule, tolerance: float = TOLERANCE) -> dict:
    """Reload `path` and run every signature on its example; compare with the Keras reference.

    Returns signature -> max abs difference. Raises ForensicsError on a missing signature or
    output, or a difference of `tolerance` or more.
    """
    loaded = tf.saved_model.load(str(path))
    differences = {}
    for name, endpoint in module.endpoints.items():
        if name not in loaded.signatures:
            raise ForensicsError(f"reload check: signature {name!r} missing from {path}")
        function = loaded.signatures[name]
        served = function(**{key: tf.constant(value) for key, value in endpoint.example.items()})
        expected = endpoint.reference(endpoint.example)
        if set(served) != set(expected):
            raise ForensicsError(f"reload check: {name} returns {sorted(served)}, Keras {sorted(expected)}")
        worst = 0.0
        for key, value in expected.items():
            got = served[key].numpy()
            value = np.asarray(value)
            if got.shape != value.shape:
                raise ForensicsError(f"reload check: {name}/{key} has shape {got.shape}, Keras {value.shape}")
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - value))) if value.size else 0.0)
        if not worst < tolerance:
            raise ForensicsError(f"reload check: {name} differs from the Keras model by {worst:.3g} "
                                 f"(tolerance {tolerance:g})")
        differences[name] = worst
    return differences


def write_warmup_requests(saved_model_dir, model_name: str, examples: dict) -> Path:
    """assets.extra/tf_serving_warmup_requests: one PredictionLog per signature (TFRecord).

    TF-Serving replays these when it loads the version, so the first real request does not pay
    for graph initialisation.
    """
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        raise ForensicsError("export needs tensorflow-serving-api: pip install keras_forensics[serving]") from None
    path = Path(saved_model_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in examples.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_signature_defs(saved_model_dir) -> dict:
    """signature name -> SignatureDef proto of the 'serve' MetaGraph in saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(saved_model_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ForensicsError(f"{path}: no MetaGraph tagged 'serve'")


def _shape_text(tensor_shape) -> str:
    if tensor_shape.unknown_rank:
        return "unknown_rank"
    return "(" + ", ".join(str(d.size) for d in tensor_shape.dim) + ")"


def describe(saved_model_dir) -> str:
    """The SignatureDefs in `saved_model_cli show --dir DIR --all` layout."""
    from tensorflow.core.framework import types_pb2

    lines = [f"MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs ({saved_model_dir}):", ""]
    for name, signature in sorted(read_signature_defs(saved_model_dir).items()):
        lines.append(f"signature_def['{name}']:")
        for title, tensors in (("input", signature.inputs), ("output", signature.outputs)):
            lines.append(f"  The given SavedModel SignatureDef contains the following {title}(s):")
            for key in sorted(tensors):
                info = tensors[key]
                lines += [f"    {title}s['{key}'] tensor_info:",
                          f"        dtype: {types_pb2.DataType.Name(info.dtype)}",
                          f"        shape: {_shape_text(info.tensor_shape)}",
                          f"        name: {info.name}"]
        lines += [f"  Method name is: {signature.method_name}", ""]
    return "\n".join(lines)


def export_generator(kind: str, model_dir, export_base="saved_models", version: int | None = None,
                     overwrite: bool = False) -> Path:
    """Write the generator(s) of a finished `kind` run to <export_base>/<kind>/<version>/ with
    `export` (signatures, warm-up requests, reload check,
    atomic rename), then add the run's generator.json under assets.extra/ for `generate`."""
    if kind not in ("wgan", "cyclegan"):
        raise ForensicsError(f"unknown generator kind {kind!r} (wgan or cyclegan)")
    model_dir = Path(model_dir)
    info_path = model_dir / artifacts.INFO_FILE
    if not info_path.exists():
        raise ForensicsError(f"{model_dir}: no {artifacts.INFO_FILE}; is it a {kind} training run?")
    result = export(kind, model_dir, export_base=export_base, version=version, overwrite=overwrite,
                               verbose=False)
    add_info(model_dir, result.path)
    return result.path


def add_info(model_dir, saved_model_dir) -> Path | None:
    """Copy a run's generator.json (image size, channels, bit depth, training data and held-out
    groups) into its SavedModel's assets.extra/, where `generate` and `evaluate wgan` read it.
    Returns the written file, or None for a run without generator.json."""
    info_path = Path(model_dir) / artifacts.INFO_FILE
    if not info_path.exists():
        return None
    extra = Path(saved_model_dir) / "assets.extra"
    extra.mkdir(exist_ok=True)
    return artifacts.write_info(extra, {**json.loads(info_path.read_text()), "exported_from": str(model_dir)})
