"""Datasets, the triplet pipeline, configs and the preview command."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import DATA, ROOT, requires_data
from keras_forensics import config as config_lib
from keras_forensics import datasets
from keras_forensics.config import DeformationConfig, SiameseTrainConfig
from keras_forensics.data.pipeline import GroupSampler, fixed_triplets, triplet_dataset
from keras_forensics.errors import ForensicsError


def small_patchset(num_groups=4, per_group=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 255, (num_groups * per_group, size, size), dtype=np.uint8)
    groups = np.repeat(np.arange(num_groups), per_group)
    return datasets.PatchSet(patches, groups, [f"g{i}" for i in range(num_groups)])


def test_sample_micrographs_ship_with_the_packages():
    patchset = datasets.sample_micrographs()
    assert patchset.patches.shape[1:] == (256, 256) and patchset.patches.dtype == np.uint8
    assert patchset.num_groups >= 15 and len(patchset) >= 300
    # Channels of one stained image form one group.
    assert "immunohistochemistry" in patchset.names and "immunohistochemistry__c1" not in patchset.names


def test_folder_tiles_pads_and_upscales(tmp_path, rng):
    Image.fromarray(rng.integers(0, 255, (300, 700), dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(rng.integers(0, 255, (200, 180), dtype=np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(tmp_path / "tiny.png")
    (tmp_path / "broken.png").write_text("x")
    patchset = datasets.folder(tmp_path, patch_size=256)
    assert sorted(patchset.names) == ["small", "tiny", "wide"]
    counts = np.bincount(patchset.groups)
    assert counts[patchset.names.index("wide")] == 2 * 5  # rows 0, 44; columns 0,128,256,384,444
    assert counts[patchset.names.index("small")] == 1 and counts[patchset.names.index("tiny")] == 1


def test_multiscale_patches_balance_scales_and_skip_tiny_views(tmp_path, rng):
    image = rng.random((600, 600)).astype(np.float32)
    single = datasets.multiscale_patches(image, 256, "tiles", None, 0, np.random.default_rng(0))
    assert len(single) == 16  # starts 0, 128, 256, 344 on each axis
    both = datasets.multiscale_patches(image, 256, "tiles", None, 0, np.random.default_rng(0), scales=(1.0, 0.5))
    assert len(both) == 2 * len(single)  # the one half-scale tile is repeated to match
    np.testing.assert_array_equal(both[:16], single)
    half = datasets.to_uint8(datasets.fit_to_patch(datasets.downscale(image, 0.5), 256))
    np.testing.assert_array_equal(both[16], half[:256, :256])
    # At a quarter the short side (150 px) is under 3/4 of a patch: that scale is skipped.
    three = datasets.multiscale_patches(image, 256, "tiles", None, 0, np.random.default_rng(0),
                                        scales=(1.0, 0.5, 0.25))
    assert len(three) == 32
    Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "a.png")
    assert len(datasets.folder(tmp_path, scales=(1.0, 0.5))) == 32
    with pytest.raises(ForensicsError, match="--patch_scales"):
        config_lib.replace(SiameseTrainConfig(), patch_scales="1,1.5")
    assert config_lib.replace(SiameseTrainConfig(), patch_scales="1,0.5").patch_scales == (1.0, 0.5)


def test_channel_siblings_share_a_group_and_regex_groups():
    assert datasets.field_group("cell__c0") == datasets.field_group("cell__c2") == "cell"
    key = datasets.regex_group(config_lib.SHARED_MICROGRAPH_GROUPS)
    assert key("cpex__01_POS002_D") == key("cpex__01_POS002_F")
    assert key("cpex__DMSO_B5_t0") == key("cpex__DMSO_B5_t24")
    assert key("cpex__AS_09047_050428030001_A01f00d2") != key("cpex__AS_09047_050428030001_A01f01d2")
    with pytest.raises(ForensicsError, match="not a valid regular expression"):
        datasets.regex_group("(")


def test_split_is_by_group_and_fixed_by_seed():
    patchset = small_patchset(num_groups=10)
    split = patchset.split(seed=3)
    assert split == patchset.split(seed=3)
    names = split["train"] + split["validation"] + split["test"]
    assert sorted(names) == sorted(patchset.names) and len(set(names)) == 10
    assert all(split[k] for k in split)
    train = patchset.subset(split["train"])
    assert set(train.names) == set(split["train"]) and len(train) == 3 * len(split["train"])
    with pytest.raises(ForensicsError, match="at least 3"):
        small_patchset(num_groups=2).split()


def test_split_by_patch_puts_patches_of_one_image_in_train_and_test(tmp_path):
    """--split_by patch (the paper's protocol): patches are split at random, so one source image
    gives train and test patches; each keeps its group (negatives still come from other images);
    split.json holds the indices, and a run resumes or is evaluated only on the same patches."""
    from keras_forensics.training.siamese import apply_split, split_patches

    patchset = small_patchset(num_groups=4, per_group=10)
    split = patchset.split_patches(seed=1)
    assert split == patchset.split_patches(seed=1)
    assert sorted(split["train"] + split["validation"] + split["test"]) == list(range(len(patchset)))
    test = patchset.take(split["test"])
    np.testing.assert_array_equal(test.patches, patchset.patches[split["test"]])
    assert [test.names[g] for g in test.groups] == [patchset.names[g] for g in patchset.groups[split["test"]]]
    train_sources = {patchset.names[g] for g in patchset.groups[split["train"]]}
    assert train_sources & set(test.names)  # what the group split never allows

    config = config_lib.replace(SiameseTrainConfig(), split_by="patch")
    parts = split_patches(patchset, config, tmp_path)
    saved = json.loads((tmp_path / "split.json").read_text())
    assert saved["split_by"] == "patch" and saved["patches"] == len(patchset)
    assert sum(len(part) for part in parts.values()) == len(patchset)
    with pytest.raises(ForensicsError, match="cut"):
        apply_split(small_patchset(num_groups=4, per_group=3), saved)
    with pytest.raises(ForensicsError, match="resume with --split_by patch"):
        split_patches(patchset, SiameseTrainConfig(), tmp_path)
    with pytest.raises(ForensicsError, match="--split_by"):
        config_lib.replace(SiameseTrainConfig(), split_by="image")
    with pytest.raises(ForensicsError, match="native patches only"):
        config_lib.replace(SiameseTrainConfig(), split_by="patch", patch_scales="1,0.5")


def test_different_always_comes_from_another_group():
    patchset = small_patchset(num_groups=5, per_group=4)
    sampler = GroupSampler(patchset)
    anchor, other = sampler.anchors_and_others(2000, tf.constant([0, 1]))
    group = np.sort(patchset.groups)  # the sampler sorts patches by group
    assert np.all(group[anchor.numpy()] != group[other.numpy()])
    assert set(group[other.numpy()]) == set(range(5))


def test_triplets_shapes_and_reproducibility():
    config = DeformationConfig(patch_size=64, crop_size=32, text_bank_size=8)
    patchset = small_patchset()
    first = next(iter(triplet_dataset(patchset, config, batch_size=4, seed=5)))
    again = next(iter(triplet_dataset(patchset, config, batch_size=4, seed=5)))
    later = next(iter(triplet_dataset(patchset, config, batch_size=4, seed=5, start_step=1)))
    for key in ("anchor", "same", "different"):
        assert first[key].shape == (4, 32, 32, 1) and first[key].dtype == tf.float32
        np.testing.assert_array_equal(first[key].numpy(), again[key].numpy())
    assert not np.array_equal(first["same"].numpy(), later["same"].numpy())
    # Resuming at step k yields exactly batch k of the uninterrupted stream.
    stream = iter(triplet_dataset(patchset, config, batch_size=4, seed=5))
    next(stream)
    np.testing.assert_array_equal(next(stream)["same"].numpy(), later["same"].numpy())


def test_pipeline_rejects_mismatched_or_single_group_data():
    with pytest.raises(ForensicsError, match="expects 256"):
        triplet_dataset(small_patchset(size=64), DeformationConfig())
    with pytest.raises(ForensicsError, match="at least 2 different source images"):
        triplet_dataset(small_patchset(num_groups=1, size=256))


def test_fixed_triplets_count():
    triplets = fixed_triplets(small_patchset(), DeformationConfig(patch_size=64, crop_size=32, text_bank_size=8), count=10, batch_size=4)
    assert {k: v.shape for k, v in triplets.items()} == {k: (10, 32, 32, 1) for k in ("anchor", "same", "different")}


def test_config_flags_nested_and_errors():
    config = config_lib.replace(SiameseTrainConfig(), p_jpeg=0.2, **{"model.filters": "8,16"}, steps=7.0,
                                data="a,b")
    assert config.deformation.p_jpeg == 0.2 and config.model.filters == (8, 16) and config.steps == 7
    assert config.data == ("a", "b")
    with pytest.raises(ForensicsError, match="unknown option --nonsense"):
        config_lib.replace(SiameseTrainConfig(), nonsense=1)
    with pytest.raises(ForensicsError, match="probability"):
        DeformationConfig(p_jpeg=2.0)
    with pytest.raises(ForensicsError, match="whole number"):
        config_lib.replace(SiameseTrainConfig(), steps="many")


def test_config_json_round_trip(tmp_path):
    config = config_lib.replace(SiameseTrainConfig(), p_gamma=0.1, data=("x",))
    config_lib.save(config, tmp_path / "c.json")
    assert config_lib.load(SiameseTrainConfig, tmp_path / "c.json") == config


def test_preview_command_writes_a_grid(tmp_path):
    out = tmp_path / "triplets.png"
    result = subprocess.run([sys.executable, "-m", "keras_forensics.data", "preview", "--out", str(out), "--n", "3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    image = np.asarray(Image.open(out))
    assert image.shape[0] > 3 * 128 and image.shape[1] >= 3 * 128
    assert image.std() > 20  # real picture content, not a blank page


def test_cli_help_lists_commands():
    for module, expected in (("keras_forensics.train", "siamese"), ("keras_forensics.data", "preview")):
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                                text=True, timeout=120, env={"PAGER": "cat", "PATH": "/usr/bin:/bin"})
        assert expected in result.stdout + result.stderr


def test_cli_reports_user_errors_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "keras_forensics.train", "siamese", "--data", str(tmp_path / "nope"),
                             "--model_dir", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --data")
    assert "Traceback" not in result.stderr


@requires_data
def test_shared_micrographs_make_patches():
    patchset = datasets.folder(DATA / "micrographs", group_by=config_lib.SHARED_MICROGRAPH_GROUPS, mode="random",
                               num_random=1)
    assert patchset.num_groups == 102 and len(patchset) >= 102
