"""SSCD score normalisation (screening.background): the normalised distance, its search, and the
screen, index and export paths that carry the background set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keras_forensics.screening.background import Background
from keras_forensics.screening.pairs import pairwise_distances, search_pairs


def _clustered(rng, count=60, dimension=8):
    """Unit-free points: a crowded cluster (the first third) and spread-out ones."""
    vectors = rng.normal(size=(count, dimension)).astype(np.float32)
    vectors[: count // 3] *= 0.2
    return vectors


def _normalised_matrix(background, vectors, metric):
    offsets = background.offsets(vectors)
    full = np.maximum(pairwise_distances(vectors, vectors, metric) + offsets[:, None] + offsets[None, :], 0.0)
    np.fill_diagonal(full, np.inf)
    return full


def test_offsets_push_crowded_panels_away_and_keep_typical_ones():
    rng = np.random.default_rng(0)
    background = Background(rng.normal(size=(400, 8)).astype(np.float32), "squared_l2", k=10)
    # a background panel's own offset is centred on 0 (median reference), so typical distances stay
    own = background.offsets(background.vectors)
    assert abs(float(np.median(own))) < 0.05 * background.reference
    crowded = background.offsets(np.zeros((1, 8), np.float32))  # the densest place: the centre
    far = background.offsets(np.full((1, 8), 10.0, np.float32))  # nothing unrelated is near
    assert crowded[0] > 0 > far[0]
    assert far[0] == pytest.approx(background.floor)  # capped: the floor of every offset
    assert background.describe()["background_panels"] == 400


@pytest.mark.parametrize("metric", ["squared_l2", "l1"])
@pytest.mark.parametrize("method", ["exact", "flat", "hnsw"])
def test_normalised_search_finds_each_panels_nearest_under_the_normalised_distance(metric, method):
    pytest.importorskip("faiss") if method != "exact" else None
    rng = np.random.default_rng(1)
    background = Background(rng.normal(size=(300, 8)).astype(np.float32), metric)
    vectors = _clustered(rng)
    full = _normalised_matrix(background, vectors, metric)
    pairs, used = search_pairs(vectors, -np.inf, method, k=5, metric=metric, background=background)
    assert used == method
    wanted = {(min(i, j), max(i, j)) for i in range(len(vectors)) for j in np.argsort(full[i])[:5]}
    assert wanted <= pairs.as_set()
    found = dict(zip(zip(pairs.first.tolist(), pairs.second.tolist()), pairs.distance.tolist()))
    for pair, distance in found.items():
        assert distance == pytest.approx(full[pair], rel=1e-3, abs=1e-4)
    # the normalised ranking differs from the raw one: the crowded cluster loses its neighbours
    raw, _ = search_pairs(vectors, -np.inf, method, k=5, metric=metric)
    assert raw.as_set() != pairs.as_set()


def test_normalised_threshold_admits_exactly_the_pairs_within_it():
    rng = np.random.default_rng(2)
    background = Background(rng.normal(size=(300, 8)).astype(np.float32), "squared_l2")
    vectors = _clustered(rng)
    full = _normalised_matrix(background, vectors, "squared_l2")
    threshold = float(np.quantile(full[np.isfinite(full)], 0.05))
    wanted = {(i, j) for i in range(len(vectors)) for j in range(i + 1, len(vectors)) if full[i, j] <= threshold}
    assert wanted
    for method in ("exact", "flat"):
        if method == "flat":
            pytest.importorskip("faiss")
        pairs, _ = search_pairs(vectors, threshold, method, k=0, metric="squared_l2", background=background)
        assert pairs.as_set() == wanted


def test_background_file_round_trip_and_bad_files(tmp_path):
    from keras_forensics.errors import ForensicsError

    rng = np.random.default_rng(3)
    background = Background(rng.normal(size=(50, 4)).astype(np.float32), "l1", k=3)
    path = background.save(tmp_path / "background.npz")
    loaded = Background.load(path, "l1")
    assert loaded.reference == pytest.approx(background.reference)
    assert Background.load(tmp_path / "missing.npz", "l1") is None
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(ForensicsError, match="not a background file"):
        Background.load(tmp_path / "bad.npz", "l1")
    with pytest.raises(ForensicsError, match="more than k"):
        Background(np.zeros((3, 4), np.float32), "l1", k=3)


def test_a_run_dirs_background_reaches_the_scorer_and_the_screen(tmp_path):
    """A run dir with background.npz: the scorer loads it, `screen --normalise` reports
    normalised distances (all pairs of a small input), and the default gives the raw ones; an
    index is searched only the way it was built (`index build --normalise` or not)."""
    from screening_helpers import save_gray, skimage_gray, tiny_triplet_model

    from keras_forensics.screening.model import load_scorer
    from keras_forensics.screening.screener import Screener

    run = tmp_path / "run"
    run.mkdir()
    tiny_triplet_model().save(run / "model.keras")
    scorer = load_scorer(run)
    assert scorer.background is None
    rng = np.random.default_rng(4)
    panels = [rng.random((64, 64)).astype(np.float32) for _ in range(40)]
    Background(scorer.embed_panels(panels, progress=False), scorer.metric).save(run / "background.npz")
    scorer = load_scorer(run)
    assert scorer.background is not None and "background" in scorer.describe()

    image = skimage_gray("camera")[::2, ::2]
    for name, crop in {"a": image[:128, :128], "b": image[:128, :120], "c": image[100:228, 100:228]}.items():
        save_gray(tmp_path / f"{name}.png", crop)
    files = [tmp_path / f"{name}.png" for name in "abc"]
    normalised = Screener(scorer, verify=False, progress=False, normalise=True, split="none").screen(files)
    raw = Screener(scorer, verify=False, progress=False, split="none").screen(files)
    position = {panel.key: n for n, panel in enumerate(normalised.panels)}
    offsets = scorer.background.offsets(normalised.vectors[:, 0] if normalised.turns else normalised.vectors)
    by_pair = {frozenset((r.a.key, r.b.key)): r.distance for r in raw}
    assert len(normalised) == len(by_pair) == 3
    for record in normalised:
        expected = by_pair[frozenset((record.a.key, record.b.key))] + offsets[position[record.a.key]] \
            + offsets[position[record.b.key]]
        assert record.distance == pytest.approx(max(expected, 0.0), rel=1e-4, abs=1e-5)

    from keras_forensics.errors import ForensicsError
    from keras_forensics.screening import index as index_lib

    index_lib.build(files[:2], tmp_path / "raw_index", scorer, kind="flat", split="none", progress=False)
    index_lib.build(files[:2], tmp_path / "normalised_index", scorer, kind="flat", split="none", progress=False,
                    normalise=True)
    against_raw = Screener(scorer, verify=False, progress=False, split="none").screen(
        files[2:], index=tmp_path / "raw_index")
    against_normalised = Screener(scorer, verify=False, progress=False, normalise=True, split="none").screen(
        files[2:], index=tmp_path / "normalised_index")
    # c against the indexed a and b: the same pairs as within the input, in each mode
    for result, within in ((against_raw, raw), (against_normalised, normalised)):
        def names(record):
            return frozenset(Path(panel.file).name for panel in (record.a, record.b))

        expected = {names(r): r.distance for r in within}
        assert len(result) == 2
        for record in result:
            key = names(record)
            assert record.distance == pytest.approx(expected[key], rel=1e-4, abs=1e-5)
    with pytest.raises(ForensicsError, match="built without --normalise"):
        Screener(scorer, verify=False, progress=False, normalise=True, split="none").screen(
            files[2:], index=tmp_path / "raw_index")
    with pytest.raises(ForensicsError, match="built with --normalise"):
        Screener(scorer, verify=False, progress=False, split="none").screen(files[2:], index=tmp_path / "normalised_index")
