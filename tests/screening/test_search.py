"""Pair search at scale: exact blockwise TF, FAISS flat and HNSW; the corpus index; calibration."""

from __future__ import annotations

import csv
import shutil
import sys

import numpy as np
import pytest

from screening_helpers import run_cli, save_gray, skimage_gray, tiny_triplet_model


def _clustered(count=1200, dimension=16, seed=0):
    """Points with planted near-duplicate groups, as weighted embeddings look."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0, 0.4, (count, dimension)).astype(np.float32)
    copies = rng.choice(count, count // 5, replace=False)
    vectors[copies] = vectors[rng.integers(0, count, len(copies))] + rng.normal(0, 0.03, (len(copies), dimension))
    return vectors


def _brute_force(vectors, threshold):
    distances = np.abs(vectors[:, None] - vectors[None]).sum(-1)
    first, second = np.nonzero(np.triu(distances <= threshold, 1))
    return set(zip(first.tolist(), second.tolist())), distances


def test_exact_blockwise_matches_brute_force_including_nearest_neighbours():
    from keras_forensics.screening.pairs import exact_pairs

    vectors = _clustered(700, 12, seed=1)
    truth, distances = _brute_force(vectors, 1.0)
    # Blocks smaller than the set, and not dividing it, so every edge case of the loop runs.
    found = exact_pairs(vectors, 1.0, block_rows=96, block_cols=160)
    assert found.as_set() == truth and len(truth) > 100
    np.testing.assert_allclose(found.distance, distances[found.first, found.second], rtol=1e-5, atol=1e-5)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :2]
    expected = truth | {(min(i, j), max(i, j)) for i in range(len(vectors)) for j in nearest[i]}
    assert exact_pairs(vectors, 1.0, k=2, block_rows=96, block_cols=160).as_set() == expected


def test_faiss_and_exact_screening_agree_on_a_random_set():
    from keras_forensics.screening.pairs import exact_pairs, faiss_pairs, search_pairs

    vectors = _clustered(1500, 16)
    exact = exact_pairs(vectors, 1.0)
    assert len(exact) > 200
    flat = faiss_pairs(vectors, 1.0, kind="flat")
    assert flat.as_set() == exact.as_set()
    np.testing.assert_allclose(flat.distance, exact.distance, rtol=1e-4, atol=1e-4)
    hnsw = faiss_pairs(vectors, 1.0, kind="hnsw")
    assert hnsw.as_set() <= exact.as_set()
    assert len(hnsw.as_set() & exact.as_set()) / len(exact) >= 0.99
    # auto: exact at or below exact_max, FAISS flat up to FLAT_MAX, HNSW above.
    assert search_pairs(vectors, 1.0, exact_max=len(vectors))[1] == "exact"
    assert search_pairs(vectors, 1.0, exact_max=100)[1] == "flat"


def test_one_process_compares_embeddings_of_several_widths():
    """The L1 kernel unrolls over static slices of D: each width gets its own trace."""
    from keras_forensics.screening.pairs import pairwise_distances

    rng = np.random.default_rng(0)
    for dim in (16, 64, 16, 8):
        a, b = rng.random((5, dim)).astype(np.float32), rng.random((7, dim)).astype(np.float32)
        np.testing.assert_allclose(pairwise_distances(a, b), np.abs(a[:, None] - b[None]).sum(-1), rtol=1e-5)


def test_auto_search_takes_hnsw_above_flat_max(monkeypatch):
    from keras_forensics.screening import pairs

    monkeypatch.setattr(pairs, "FLAT_MAX", 200)
    assert pairs.search_pairs(_clustered(300, 16), 1.0, exact_max=100)[1] == "hnsw"


@pytest.mark.parametrize("metric", ["l1", "squared_l2"])
@pytest.mark.parametrize("method", ["exact", "flat", "hnsw"])
def test_shortlist_is_each_panels_k_nearest_and_nothing_else(method, metric):
    """threshold -inf: no pair is admitted by distance; every panel brings exactly its K nearest."""
    from keras_forensics.screening.pairs import distance_matrix, search_pairs

    vectors = _clustered(400, 16)
    k = 5
    found, used = search_pairs(vectors, -np.inf, method=method, k=k, metric=metric)
    assert used == method
    distances = distance_matrix(vectors, metric)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :k]
    expected = {(min(i, j), max(i, j)) for i in range(len(vectors)) for j in nearest[i]}
    pairs = found.as_set()
    assert len(pairs) <= len(vectors) * k
    if method == "hnsw":
        assert len(pairs & expected) / len(expected) >= 0.97 and len(pairs - expected) <= 0.03 * len(pairs)
    else:
        assert pairs == expected
    exact = distances[found.first, found.second]
    np.testing.assert_allclose(found.distance, exact, rtol=1e-3, atol=1e-3)


def test_missing_faiss_gives_a_clear_error_and_exact_still_works(monkeypatch):
    from keras_forensics.errors import ForensicsError
    from keras_forensics.screening import pairs

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(ForensicsError, match=r"pip install 'keras_forensics\[search\]'"):
        pairs.faiss_pairs(_clustered(50), 1.0)
    found, method = pairs.search_pairs(_clustered(300), 1.0, exact_max=100)
    assert method == "exact" and len(found)


def test_index_build_add_and_screen_across_papers(tmp_path):
    model = tmp_path / "model.keras"
    tiny_triplet_model().save(model)
    paper_1, paper_2, manuscript = (tmp_path / n for n in ("paper1", "paper2", "manuscript"))
    for folder in (paper_1, paper_2, manuscript):
        folder.mkdir()
    camera = skimage_gray("camera")[:256, :256]
    save_gray(paper_1 / "fig1.png", camera)
    save_gray(paper_1 / "fig2.png", skimage_gray("astronaut")[:256, :256])
    save_gray(paper_2 / "fig1.png", skimage_gray("coffee")[:256, :256])
    # The new manuscript re-uses paper 1's camera panel, rotated, and has one panel of its own.
    save_gray(manuscript / "a.png", np.ascontiguousarray(np.rot90(camera)))
    save_gray(manuscript / "b.png", skimage_gray("chelsea")[:256, :256])

    index = tmp_path / "index"
    status, stdout, stderr = run_cli(["index", "build", paper_1, "--out", index, "--model", model])
    assert status == 0, stderr
    assert "panels_added" in stdout
    status, _, _ = run_cli(["index", "add", paper_2, paper_1, "--index", index, "--model", model])
    assert status == 0
    with open(index / "panels.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["file"].split("/")[-2:] for row in table] == [["paper1", "fig1.png"], ["paper1", "fig2.png"],
                                                               ["paper2", "fig1.png"]]  # paper1 not twice

    out = tmp_path / "report"
    status, _, stderr = run_cli(["screen", manuscript, "--out", out, "--index", index, "--model", model])
    assert status == 0, stderr
    with open(out / "pairs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    top = rows[0]
    assert top["relation"] == "across-papers"
    assert {top["a_file"].split("/")[-1], top["b_file"]} == {"a.png", str(paper_1 / "fig1.png")}
    assert int(top["inliers"]) >= 20 and float(top["combined"]) > 0.9
    assert (out / top["b"]).is_file()  # the indexed panel is copied into the report

    other = tmp_path / "other_model.keras"
    tiny_triplet_model(seed=3).save(other)
    status, _, stderr = run_cli(["screen", manuscript, "--out", tmp_path / "r2", "--index", index, "--model", other])
    assert status == 2 and "built with another model" in stderr


def test_combined_score_calibration_and_average_precision():
    from keras_forensics.screening.scoring import CombinedScore, average_precision

    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.1
    distance = np.where(labels, rng.normal(0.8, 0.4, 2000), rng.normal(2.0, 0.5, 2000))
    inliers = np.where(labels, rng.poisson(30, 2000), rng.poisson(2, 2000))
    fitted = CombinedScore.fit(distance, inliers, labels, fitted_on="synthetic")
    assert fitted.siamese_weight > 0 and fitted.inlier_weight > 0
    combined = fitted(distance, inliers)
    assert average_precision(combined, labels) > max(average_precision(-distance, labels),
                                                     average_precision(inliers, labels))
    # Calibrated: among pairs scored about 0.5, about half are re-uses.
    middle = (combined > 0.3) & (combined < 0.7)
    assert middle.sum() == 0 or abs(labels[middle].mean() - combined[middle].mean()) < 0.2
    # AP: perfect order 1; ties earn no credit for the order they happen to be listed in.
    assert average_precision([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert average_precision([1, 1, 1, 1], [1, 0, 0, 0]) == 0.25
    # A feature that hurts is dropped (weight 0) rather than given a negative weight.
    assert CombinedScore.fit(distance, -inliers + 40, labels).inlier_weight == 0.0
    # Coverage: chance matches among the different pairs that reach many inliers in a corner.
    chance = ~labels & (rng.random(2000) < 0.05)
    inliers = np.where(chance, rng.poisson(25, 2000), inliers)
    coverage = np.where(labels, rng.uniform(0.4, 1.0, 2000), rng.uniform(0.0, 0.2, 2000))
    with_coverage = CombinedScore.fit(distance, inliers, labels, coverage)
    assert with_coverage.coverage_weight > 0 and fitted.coverage_weight == 0.0
    assert (average_precision(with_coverage(distance, inliers, coverage), labels)
            > average_precision(CombinedScore.fit(distance, inliers, labels)(distance, inliers), labels))
    assert CombinedScore.load().coverage_weight >= 0  # the shipped calibration reads back
    # Coverage counts from COVERAGE_MIN_INLIERS inliers: 4 chance matches spread over a panel add nothing.
    from keras_forensics.screening.scoring import COVERAGE_MIN_INLIERS

    shipped = CombinedScore.load()
    few = COVERAGE_MIN_INLIERS - 1
    assert shipped([0.4], [few], [0.9])[0] == shipped([0.4], [few], [0.0])[0]
    assert shipped([0.4], [COVERAGE_MIN_INLIERS], [0.9])[0] > shipped([0.4], [COVERAGE_MIN_INLIERS], [0.0])[0]


def test_real_cases_folder_builder(tmp_path):
    """tools/make_real_cases.py labels pairs by overlapping source regions (skips without the data)."""
    from conftest import DATA, ROOT

    sys.path.insert(0, str(ROOT / "tools"))
    import make_real_cases

    if not (DATA / "micrographs").is_dir():
        pytest.skip("needs ../shared/data")
    assert make_real_cases.DEFAULT_SPLIT.is_file()  # the shipped descriptor's split, kept in git

    summary = make_real_cases.make(tmp_path / "cases", split="test", originals=2, reuses=1, seed=3)
    rows = make_real_cases.read_manifest(tmp_path / "cases")
    labels = make_real_cases.pair_labels(rows)
    assert summary["panels"] == len(rows) and labels.sum() == summary["reused_pairs"] == len(rows) // 2
    first, second = np.triu_indices(len(rows), 1)
    for i, j in zip(first[labels], second[labels]):
        assert rows[i]["file"].rsplit("_", 1)[0] == rows[j]["file"].rsplit("_", 1)[0]  # an original and its copy
    from keras_forensics.data.io import read_image

    for row in rows:  # every panel, crops of re-uses included, shows content, not blank background
        source = np.round(read_image(DATA / "micrographs" / row["source"]) * 255)
        x, y, w, h = (int(row[key]) for key in ("x", "y", "width", "height"))
        assert source[y:y + h, x:x + w].std() >= 0.5 * source.std(), row
    shutil.rmtree(tmp_path / "cases")


def test_turned_search_finds_pairs_only_close_in_another_orientation():
    """search_pairs(turned=...): a pair's distance is the smallest over orientations, the same
    pairs and distances from the exact path, FAISS flat and a brute-force reference."""
    from keras_forensics.screening.pairs import search_pairs

    rng = np.random.default_rng(3)
    count, turns, dimension = 300, 3, 8
    vectors = rng.normal(0, 1, (count, dimension)).astype(np.float32)
    turned = rng.normal(0, 1, (count, turns, dimension)).astype(np.float32)
    # Panel 1 is panel 0 turned: far as it is, equal to orientation 2 of panel 0.
    turned[0, 2] = vectors[1] + 0.01
    plain, _ = search_pairs(vectors, 0.5, "exact")
    assert (0, 1) not in plain.as_set()
    full = np.abs(vectors[:, None] - vectors[None]).sum(-1)
    for t in range(turns):
        full = np.minimum(full, np.abs(turned[:, t, None] - vectors[None]).sum(-1))
    full = np.minimum(full, full.T)
    first, second = np.nonzero(np.triu(full <= 2.5, 1))
    truth = set(zip(first.tolist(), second.tolist()))
    assert (0, 1) in truth and len(truth) > 5
    exact, method = search_pairs(vectors, 2.5, "exact", turned=turned)
    assert method == "exact" and exact.as_set() == truth
    np.testing.assert_allclose(exact.distance, full[exact.first, exact.second], rtol=1e-5, atol=1e-5)
    flat, _ = search_pairs(vectors, 2.5, "flat", turned=turned)
    assert flat.as_set() == truth
    # k nearest: the nearest other panel of each panel in each of its orientations is a candidate.
    nearest = set()
    for query in [vectors] + [turned[:, t] for t in range(turns)]:
        distances = np.abs(query[:, None] - vectors[None]).sum(-1)
        np.fill_diagonal(distances, np.inf)
        nearest |= {(min(i, j), max(i, j)) for i, j in enumerate(distances.argmin(1).tolist())}
    assert search_pairs(vectors, 0.0, "exact", k=1, turned=turned)[0].as_set() == nearest


def test_dihedral_orientations_and_oriented_embeddings():
    from keras_forensics.screening.model import DIHEDRAL, SiameseScorer, dihedral

    rng = np.random.default_rng(0)
    images = rng.random((2, 6, 6, 1)).astype(np.float32)
    turned = dihedral(images).reshape(len(DIHEDRAL), 2, 6, 6, 1)
    np.testing.assert_array_equal(turned[0], images)
    np.testing.assert_array_equal(turned[1], np.rot90(images, 1, axes=(1, 2)))
    np.testing.assert_array_equal(turned[4], images[:, :, ::-1])
    assert len({t.tobytes() for t in turned[:, 0]}) == 8  # eight different orientations

    model = tiny_triplet_model()
    from keras_forensics.models import siamese

    embedding, distance = siamese.parts_of(model)
    scorer = SiameseScorer.from_keras(embedding, distance)
    panels = [rng.random((40, 40)).astype(np.float32) for _ in range(3)]
    plain = scorer.embed_panels(panels, progress=False)
    oriented = scorer.embed_panels(panels, progress=False, oriented=True)
    assert oriented.shape == (3, 8, plain.shape[1])
    np.testing.assert_allclose(oriented[:, 0], plain, rtol=1e-4, atol=1e-5)
    # A quarter-turned panel, embedded as it is, is one of the original's orientations.
    again = scorer.embed_panels([np.rot90(panels[0])], progress=False)[0]
    as_is = np.abs(plain[0] - again).sum()
    assert as_is > 0 and np.abs(oriented[0] - again).sum(-1).min() < 0.01 * as_is
