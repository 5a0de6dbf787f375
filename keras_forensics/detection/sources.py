"""Real and synthetic patches for the GAN-image detector, from folders, masked sets and generators.

A *source* is one `--real` or `--fake` argument of `train detector` / `evaluate detector`:

* a plain folder of real (or synthetic) images of any size: cut into patches, each file its own
  group (or the group a `group_by` regex gives it);
* a *masked set*, a folder with `tampered/` and `mask/` (Manjunath et al., WIFS 2024, built on
  Mandelli et al., IEEE Access 2022): each tampered image is a real blot with one pasted synthetic
  square, white in its mask. The squares are the fakes; patches cut entirely outside them are
  real. Both are grouped by the host blot (`<host>_<n>` of `lf_64x64_<host>_<n>_patch_<k>.png`),
  so a blot never appears in two splits;
* a saved generator (a SavedModel, TF-Serving layout or not, or a run dir with model.keras),
  sampled on the fly with `GeneratorSource`.

Everything is read through `keras_forensics.data.io`, i.e. as BT.601 grayscale. This matters:
the pasted squares of the masked set carry colour the host pixels lack, a trivial shortcut.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_forensics import artifacts
from keras_forensics.data import io
from keras_forensics.data import patches as patch_sets
from keras_forensics.data.folders import folder
from keras_forensics.errors import ForensicsError

logger = logging.getLogger(__name__)

_MASKED_NAME = re.compile(r"^(?:lf_\d+x\d+_)?(?P<id>(?P<host>.+?)_patch_\d+)$")


def is_masked_set(path) -> bool:
    path = Path(path)
    return (path / "tampered").is_dir() and (path / "mask").is_dir()


def is_generator(path) -> bool:
    """A SavedModel (or a TF-Serving base folder of numbered versions) or a run dir with model.keras."""
    path = Path(path)
    return artifacts.newest_version(path) is not None or (path / artifacts.MODEL_FILE).is_file()


@dataclasses.dataclass
class Source:
    """The real and/or fake patches of one data source, grouped by source image.

    `real` and `fake` share group names when they come from the same images (a masked set), so a
    split by group keeps a blot's real and fake patches together. `generator` is set instead for
    a saved generator. `derived` marks fakes made from patches of other sources that were split
    already (`upsampling`): their groups are those patches', so a split must not filter them again.
    """

    name: str
    real: patch_sets.PatchSet | None = None
    fake: patch_sets.PatchSet | None = None
    generator: "GeneratorSource | None" = None
    num_images: int = 0
    derived: bool = False

    @property
    def group_names(self) -> list[str]:
        names = []
        for part in (self.real, self.fake):
            if part is not None:
                names += [n for n in part.names if n not in names]
        return names

    def subset(self, group_names) -> "Source":
        keep = set(group_names)

        def part(patchset):
            if patchset is None:
                return None
            return patchset.subset([n for n in patchset.names if n in keep])

        return dataclasses.replace(self, real=part(self.real), fake=part(self.fake))


def _read_pair(args):
    tampered, mask = args
    return io.read_image(tampered), io.read_image(mask) > 0.5


def masked_set(directory, patch_size: int = 64, real_per_image: int = 2, seed: int = 0,
               margin: int = 2) -> Source:
    """The synthetic squares (fake) and patches outside them (real) of a tampered/ + mask/ folder.

    Squares larger than `patch_size` give their centre crop; squares smaller than it cannot give a
    purely synthetic patch and are skipped (with a count in the log). Real patches are placed at
    random on an 8-pixel grid, at least `margin` pixels away from the square.
    """
    directory = Path(directory)
    pairs, hosts = [], []
    for tampered in io.list_image_files(directory / "tampered", recursive=False):
        match = _MASKED_NAME.match(tampered.stem)
        if not match:
            continue
        candidates = [p for p in (directory / "mask").glob(f"mask_{match['id']}.*")]
        if not candidates:
            continue
        pairs.append((tampered, candidates[0]))
        hosts.append(f"{directory.name}/{match['host']}")
    if not pairs:
        raise ForensicsError(f"{directory}: no tampered/<name> with a matching mask/mask_<id> file")
    with ThreadPoolExecutor(4) as pool:
        images = list(pool.map(_read_pair, pairs))
    names = sorted(set(hosts))
    index_of = {n: i for i, n in enumerate(names)}
    fake, fake_groups, real, real_groups, skipped = [], [], [], [], 0
    for number, ((image, mask), host) in enumerate(zip(images, hosts)):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if not len(rows) or rows[-1] - rows[0] + 1 < patch_size or cols[-1] - cols[0] + 1 < patch_size:
            skipped += 1
            continue
        top = (rows[0] + rows[-1] + 1 - patch_size) // 2
        left = (cols[0] + cols[-1] + 1 - patch_size) // 2
        fake.append(image[top:top + patch_size, left:left + patch_size])
        fake_groups.append(index_of[host])
        height, width = image.shape
        ys, xs = np.meshgrid(np.arange(0, height - patch_size + 1, 8), np.arange(0, width - patch_size + 1, 8),
                             indexing="ij")
        ys, xs = ys.ravel(), xs.ravel()
        outside = ((ys + patch_size <= rows[0] - margin) | (ys >= rows[-1] + 1 + margin)
                   | (xs + patch_size <= cols[0] - margin) | (xs >= cols[-1] + 1 + margin))
        ys, xs = ys[outside], xs[outside]
        if len(ys):
            rng = np.random.default_rng([seed, number])
            for k in rng.choice(len(ys), min(real_per_image, len(ys)), replace=False):
                real.append(image[ys[k]:ys[k] + patch_size, xs[k]:xs[k] + patch_size])
                real_groups.append(index_of[host])
    if skipped:
        logger.warning("%s: skipped %d mask(s) smaller than %d px or empty", directory, skipped, patch_size)
    if not fake:
        raise ForensicsError(f"{directory}: no synthetic square of at least {patch_size} px")

    def patchset(patches, groups):
        return patch_sets.PatchSet(patch_sets.to_uint8(np.stack(patches)), np.asarray(groups), list(names))

    return Source(directory.name, real=patchset(real, real_groups) if real else None,
                  fake=patchset(fake, fake_groups), num_images=len(pairs))


def plain_folder(directory, patch_size: int = 64, max_per_image: int | None = 32, seed: int = 0,
                 group_by: str | None = None) -> tuple[patch_sets.PatchSet, int]:
    """Patches (half-overlapping tiles, at most `max_per_image` per file) of every image below
    `directory`; group names are prefixed with the folder's name. Returns (patches, images read)."""
    directory = Path(directory)
    if not directory.exists():
        raise ForensicsError(f"{directory}: no such file or folder")
    patches = folder(directory, patch_size=patch_size, mode="tiles", stride=patch_size // 2,
                              seed=seed, group_by=group_by, max_per_image=max_per_image)
    prefix = directory.name if directory.is_dir() else directory.parent.name
    patches.names = [f"{prefix}/{n}" for n in patches.names]
    return patches, len(io.list_image_files(directory))


def source_patches(path, patch_size: int = 64, max_patches_per_image: int | None = 32,
                   seed: int = 0) -> tuple[patch_sets.PatchSet, int]:
    """The patches one command-line input stands for: the squares of a masked set, else the tiles
    of an image file or folder. Returns (patches, number of image files)."""
    path = Path(path)
    if is_masked_set(path):
        source = masked_set(path, patch_size, seed=seed)
        return source.fake, source.num_images
    return plain_folder(path, patch_size, max_patches_per_image, seed)


def load_source(path, label: str, patch_size: int = 64, real_per_masked_image: int = 2,
                max_patches_per_image: int | None = 32, seed: int = 0, group_by: str | None = None,
                demo_real: patch_sets.PatchSet | None = None) -> Source:
    """One `--real` (label "real") or `--fake` (label "fake") argument as a `Source`."""
    if label == "fake" and str(path) == UPSAMPLING_FAKES:
        if demo_real is None:
            raise ForensicsError(f"--fake {UPSAMPLING_FAKES} needs real patches to up-sample (--real DIR)")
        return Source(UPSAMPLING_FAKES, fake=upsampling_fakes(demo_real, seed=seed), derived=True)
    path = Path(path)
    if not path.exists():
        raise ForensicsError(f"--{label} {path}: no such file or folder")
    if label == "fake" and is_generator(path):
        return Source(path.name, generator=GeneratorSource(path, patch_size))
    if is_masked_set(path):
        if label == "real":
            raise ForensicsError(f"--real {path} is a masked set of synthetic squares; pass it as --fake")
        return masked_set(path, patch_size, real_per_masked_image, seed)
    patches, count = plain_folder(path, patch_size, max_patches_per_image, seed, group_by)
    return Source(path.name, **{label: patches}, num_images=count)


def split_source(source: Source, fractions, seed: int) -> dict[str, list[str]]:
    """Whole groups to train / validation / test (`patch_sets.PatchSet.split`); generators have none."""
    if source.generator is not None:
        return {"train": [], "validation": [], "test": []}
    names = source.group_names
    empty = patch_sets.PatchSet(np.zeros((0, 1, 1), np.uint8), np.zeros(0, np.int64), names)
    return empty.split(fractions, seed=seed)


# ---------------------------------------------------------------------------------------------
# procedural fakes: the checkerboard of transposed convolutions

#: The `--fake` spelling of `upsampling_fakes` made from the real patches.
UPSAMPLING_FAKES = "upsampling"


def transposed_upsample(images, seed: int = 0, factor: int = 2):
    """Down-sample [B, H, W, 1] images by `factor` (box filter), then up-sample them back with a
    random positive 2*factor x 2*factor transposed convolution of stride `factor`.

    The kernel's taps land on the output pixels by parity, and their sums differ from one parity
    class to the next, so the result carries the periodic "checkerboard" pattern of GAN
    up-sampling layers (Odena, Dumoulin, Olah, Distill 2016), a peak at frequency 1/factor in the
    spectrum (Durall et al. 2020; Frank et al. 2020).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    size = 2 * factor
    rng = np.random.default_rng(seed)
    kernel = rng.uniform(0.2, 1.0, (size, size)).astype(np.float32)
    kernel *= factor * factor / kernel.sum()  # unit gain on average
    small = tf.nn.avg_pool2d(images, factor, factor, "VALID")
    shape = tf.stack([tf.shape(images)[0], tf.shape(small)[1] * factor, tf.shape(small)[2] * factor, 1])
    out = tf.nn.conv2d_transpose(small, tf.constant(kernel[:, :, None, None]), shape, factor, "SAME")
    return tf.clip_by_value(out, 0.0, 1.0)


def upsampling_fakes(real: patch_sets.PatchSet, seed: int = 0, batch_size: int = 512) -> patch_sets.PatchSet:
    """`transposed_upsample` of every real patch (same groups): a procedural fake source."""
    out = []
    for start in range(0, len(real), batch_size):
        chunk = real.patches[start:start + batch_size, ..., None].astype(np.float32) / 255.0
        out.append(transposed_upsample(chunk, seed)[..., 0].numpy())
    return patch_sets.PatchSet(patch_sets.to_uint8(np.concatenate(out)), real.groups.copy(), list(real.names))


# ---------------------------------------------------------------------------------------------
# saved generators


class GeneratorSource:
    """Fakes sampled on the fly from a saved generator, as [B, S, S, 1] float32 in [0, 1].

    Accepts a SavedModel (a version folder, or a TF-Serving base folder whose newest numeric
    version is used) whose `serving_default` signature takes noise [B, latent] (a WGAN), or a run
    dir with model.keras whose model maps noise to images. Generated images are converted to
    grayscale; outputs in [-1, 1] (tanh) are mapped to [0, 1]; images larger than the patch are
    randomly cropped, smaller ones up-sampled.
    """

    def __init__(self, path, patch_size: int = 64):
        self.path = Path(path)
        self.patch_size = patch_size
        saved = artifacts.newest_version(self.path)
        if saved is not None:
            loaded, function = artifacts.load_saved_model(saved)
            key, spec = artifacts.signature_input(function, saved)
            self._loaded = loaded  # keeps the variables alive
            self._call = lambda noise: _first_output(function(**{key: noise}))
            input_shape = spec.shape
        else:
            model = artifacts.load_keras(self.path / artifacts.MODEL_FILE)
            # A WGAN's moving-average generator (what it exports), else its generator, else the model.
            generator = getattr(model, "sampling_generator", None) or getattr(model, "generator", model)
            self._call = lambda noise: _first_output(generator(noise, training=False))
            input_shape = tf.TensorShape(generator.input_shape)
        if input_shape.rank != 2 or input_shape[-1] is None:
            raise ForensicsError(f"{self.path}: a generator must take noise [batch, latent]; input is {input_shape}")
        self.latent_dim = int(input_shape[-1])
        probe = self._call(tf.random.stateless_normal([4, self.latent_dim], [0, 0]))
        self.signed = bool(tf.reduce_min(probe) < -0.05)

    def sample(self, count: int, seed):
        """`count` patches for a [2] seed (deterministic)."""
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
        images = tf.cast(self._call(tf.random.stateless_normal([count, self.latent_dim], seeds[0])), tf.float32)
        if self.signed:
            images = (images + 1.0) / 2.0
        if images.shape[-1] in (3, 4):
            images = tf.image.rgb_to_grayscale(images[..., :3])
        images = tf.clip_by_value(images, 0.0, 1.0)
        height, width = images.shape[1], images.shape[2]
        size = self.patch_size
        if min(height, width) < size:
            images = tf.image.resize(images, (max(size, height), max(size, width)))
            height, width = images.shape[1], images.shape[2]
        if (height, width) != (size, size):
            images = tf.image.stateless_random_crop(images, [count, size, size, 1], seeds[1])
        return images

    def patches(self, count: int, seed: int = 0, batch_size: int = 64) -> patch_sets.PatchSet:
        """A fixed set of `count` generated patches (one group), for evaluation."""
        parts = [self.sample(min(batch_size, count - start), [seed, start]).numpy()[..., 0]
                 for start in range(0, count, batch_size)]
        return patch_sets.PatchSet(patch_sets.to_uint8(np.concatenate(parts)), np.zeros(count, np.int64),
                                 [self.path.name])


def _first_output(outputs):
    if isinstance(outputs, dict):
        return outputs["images"] if "images" in outputs else next(iter(outputs.values()))
    return outputs
