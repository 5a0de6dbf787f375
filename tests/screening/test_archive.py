"""tools/benchmark.py archive: the archive's ground truth, the retrieval figures, the JSON contract."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import DATA, ROOT, requires_data

sys.path.insert(0, str(ROOT / "tools"))


def _oriented_clusters(count=90, turns=8, dimension=12, seed=0):
    """[N, T, D] vectors where rows 2i and 2i + 1 are near one another in some orientation."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0, 1, (count, turns, dimension)).astype(np.float32)
    for i in range(0, count - 1, 2):
        vectors[i + 1, 0] = vectors[i, rng.integers(turns)] + rng.normal(0, 0.3 * (i % 7), dimension)
    first = np.arange(0, count - 1, 2)
    return vectors, first, first + 1


def test_retrieval_stats_rank_by_the_normalised_distance_when_given_offsets():
    import screening_benchmarks as sb

    from keras_forensics.screening.pairs import distance_matrix
    from keras_forensics.screening.scoring import average_precision

    vectors, first, second = _oriented_clusters()
    offsets = np.random.default_rng(5).normal(0, 2.0, len(vectors)).astype(np.float32)
    stats = sb.retrieval_stats(vectors, "l1", first, second, block_rows=32, panel_offsets=offsets)
    distances = np.maximum(distance_matrix(vectors, "l1") + offsets[:, None] + offsets[None, :], 0.0)
    i, j = np.triu_indices(len(vectors), 1)
    labels = np.zeros(len(i), bool)
    labels[np.searchsorted(i * len(vectors) + j, first * len(vectors) + second)] = True
    assert stats["ap_all_pairs"] == round(average_precision(-distances[i, j], labels), 4)
    assert stats["ap_all_pairs"] != sb.retrieval_stats(vectors, "l1", first, second)["ap_all_pairs"]


@pytest.mark.parametrize("metric", ["l1", "squared_l2"])
def test_retrieval_stats_match_brute_force_ap_and_recall(metric):
    import screening_benchmarks as sb

    from keras_forensics.screening.pairs import distance_matrix
    from keras_forensics.screening.scoring import average_precision

    vectors, first, second = _oriented_clusters()
    stats = sb.retrieval_stats(vectors, metric, first, second, block_rows=32)  # blocks not dividing N
    distances = distance_matrix(vectors, metric)
    i, j = np.triu_indices(len(vectors), 1)
    labels = np.zeros(len(i), bool)
    labels[np.searchsorted(i * len(vectors) + j, first * len(vectors) + second)] = True
    assert stats["ap_all_pairs"] == round(average_precision(-distances[i, j], labels), 4)
    np.fill_diagonal(distances, np.inf)
    rank = np.argsort(np.argsort(distances, axis=1, kind="stable"), axis=1, kind="stable")
    for k in sb.RECALL_AT:
        expected = np.mean((rank[first, second] < k) | (rank[second, first] < k))
        assert stats[f"recall_at_{k}"] == round(float(expected), 4)
    assert stats["recall_at_1"] < stats["recall_at_20"] <= 1.0
    # Above all_pairs_max only the shortlists are ranked: a lower bound of the exact AP.
    shortlisted = sb.retrieval_stats(vectors, metric, first, second, all_pairs_max=10)
    assert "lower bound" in shortlisted["ap_over"]
    assert 0 < shortlisted["ap_all_pairs"] <= stats["ap_all_pairs"] + 1e-4
    assert all(shortlisted[f"recall_at_{k}"] == stats[f"recall_at_{k}"] for k in sb.RECALL_AT)


def test_oriented_index_query_returns_each_entry_once_per_query(tmp_path):
    from keras_forensics.screening.index import ScreeningIndex
    from keras_forensics.screening.pairs import build_faiss_index

    vectors, _, _ = _oriented_clusters(20, 8, 6)
    index = ScreeningIndex(tmp_path, build_faiss_index(vectors[:, 0], "flat"), [{}] * 20, {})
    rows, ids, distances = index.query(vectors, threshold=1e9, k=3)  # every entry, in all 8 orientations
    assert len(rows) == 20 * 20 and len(set(zip(rows.tolist(), ids.tolist()))) == 20 * 20
    best = np.abs(vectors[:, :, None] - vectors[None, :, 0][:, None]).sum(-1).min(1)  # [query, entry]
    np.testing.assert_allclose(distances, best[rows, ids], rtol=1e-5)


@requires_data
def test_archive_ground_truth(tmp_path):
    """Every planted re-use is recorded, distractors are disjoint crops, the split is by field."""
    from PIL import Image

    import screening_benchmarks as sb
    from make_real_cases import pair_labels

    test, others, split = sb.archive_sources(DATA, None, seed=0, workspace=tmp_path)
    assert "own deterministic split" in split["source"] and split["test_images"] == len(test) > 5
    assert not set(test) & set(others)
    rows = sb.build_archive(tmp_path / "archive", 40, test, others, groups=5, copies=1, seed=0)
    roles = [row["role"] for row in rows]
    assert len(rows) == 40 and roles.count("original") == 4 and roles.count("reuse") == 4  # a fifth planted
    for row in rows:
        with Image.open(tmp_path / "archive" / "panels" / row["file"]) as image:
            assert min(image.size) >= 64  # the screen skips nothing
    first, second = sb.reuse_pairs(rows)
    # the per-source computation is the manifest's definition applied to the whole archive
    i, j = np.triu_indices(len(rows), 1)
    labels = pair_labels(rows)
    assert set(zip(i[labels].tolist(), j[labels].tolist())) == set(zip(first.tolist(), second.tolist()))
    # exactly the planted pairs: one original and its re-use, from a test-split image
    assert len(first) == 4
    test_names = {f"{p.parent.name}/{p.name}" for p in test}
    for a, b in zip(first, second):
        assert {rows[a]["role"], rows[b]["role"]} == {"original", "reuse"}
        assert rows[a]["source"] == rows[b]["source"] in test_names
        assert rows[a if rows[a]["role"] == "reuse" else b]["edits"]
    # distractors overlap nothing else cut from their source
    box = {n: (int(r["x"]), int(r["y"]), int(r["width"]), int(r["height"])) for n, r in enumerate(rows)}
    for a in range(len(rows)):
        for b in range(a + 1, len(rows)):
            if rows[a]["source"] != rows[b]["source"] or "distractor" not in (roles[a], roles[b]):
                continue
            (xa, ya, wa, ha), (xb, yb, wb, hb) = box[a], box[b]
            assert xa + wa <= xb or xb + wb <= xa or ya + ha <= yb or yb + hb <= ya, (rows[a], rows[b])
    # the test images' other regions come first among the distractors (4 images opened)
    assert sum(rows[n]["source"] in test_names for n in range(40) if roles[n] == "distractor") >= 8
    again = sb.build_archive(tmp_path / "again", 40, test, others, groups=5, copies=1, seed=0)
    assert again == rows  # same seed, same archive


@requires_data
def test_archive_benchmark_json(tmp_path):
    """The JSON has every figure, in range, for a 30-panel archive (a tiny untrained stand-in model:
    the contract, not the accuracy, is under test)."""
    import screening_benchmarks as sb
    from screening_helpers import tiny_triplet_model

    model = tmp_path / "tiny.keras"
    tiny_triplet_model().save(model)
    result = sb.archive_benchmark([30], model=str(model), seed=0, neighbours=2, index_n=40, groups=5,
                                  manuscript=8, manuscript_reuses=2)
    assert result["benchmark"] == "archive" and "own deterministic split" in result["split"]["source"]
    (row,) = result["sizes"]
    assert row["n"] == row["panels"] == 30 and row["reuse_pairs"] == 3 and row["distractors"] == 24
    for scorer in ("descriptor", "phash_8_orientations"):
        figures = row[scorer]
        assert 0 < figures["ap_all_pairs"] <= 1 and figures["ap_over"] == "all 435 pairs"
        recalls = [figures[f"recall_at_{k}"] for k in (1, 5, 10, 20)]
        assert all(0 <= r <= 1 for r in recalls) and recalls == sorted(recalls)
    assert row["ap_ratio_descriptor_to_phash"] == round(
        row["descriptor"]["ap_all_pairs"] / row["phash_8_orientations"]["ap_all_pairs"], 2)
    screen = row["screen"]
    assert screen["verifies_every_pair"] and screen["verified_pairs"] == 435
    assert screen["verifications_per_panel"] == 14.5
    assert 0 <= screen["recall"] <= 1 and (screen["precision"] is None or 0 <= screen["precision"] <= 1)
    assert screen["reported_reuses"] <= min(screen["reported_pairs"], 3)
    assert set(screen["stage_s"]) == {"read", "embed", "search", "verify", "report"}
    assert all(v >= 0 for v in screen["stage_s"].values()) and screen["stage_s"]["embed"] > 0
    assert screen["wall_s"] >= sum(screen["stage_s"].values()) - 0.1
    assert screen["wall_ms_per_panel"] == pytest.approx(1000 * screen["wall_s"] / 30, rel=0.01)
    assert row["process_peak_rss_mb"] > 100 and screen["peak_mb_above_start"] >= 0
    index = result["manuscript_against_index"]
    assert index["index_panels"] == 40 and index["manuscript_panels"] == 8
    assert index["planted_reuses_of_indexed_panels"] == 2 and 0 <= index["planted_reuses_reported"] <= 2
    assert index["index_build_s"] > 0 and index["screen_s"] >= sum(index["screen_stage_s"].values()) - 0.1
