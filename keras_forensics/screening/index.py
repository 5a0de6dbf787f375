"""A corpus of panels embedded once and searched by later screens (the across-papers case).

`index build DIR --out INDEX_DIR` embeds every panel of a corpus (image files, folders, PDFs)
and `index add INPUT... --index INDEX_DIR` adds more; `screen ... --index INDEX_DIR` compares a new
manuscript with everything indexed before. INDEX_DIR holds:

* panels.faiss: a FAISS index (METRIC_L1; HNSW by default, flat = exact) of the weighted
  embeddings alpha * C(I), so L1 search is search under the Siamese distance f;
* panels.csv: one row per panel, in index order: id, key, file, page, figure, box, paper,
  figure_key, sha256 (of the file), width, height;
* panels/<key>.png: the crops, for the verifier and the report;
* meta.json: the model that embedded them and its fingerprint (a screen with another model is
  refused: its distances would mean nothing), the index kind and the panel count, and whether
  the index is `normalised` (`index build --normalise`, with a model that ships a background
  set): its rows then carry one more coordinate (`background.Background.augment`) so that its
  searches rank by the normalised distance f_norm, as `screen --normalise` does within the input;
  a screen must search an index the way it was built.

Files are read, embedded and written one at a time, so a corpus need not fit in memory; files
already indexed (same SHA-256) are skipped. Writes go to temporary files renamed into place.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from keras_forensics.data import io
from keras_forensics.errors import ForensicsError
from keras_forensics.screening import panels as panels_lib
from keras_forensics.screening.panels import Panel

BACKGROUND_HELP = "re-export the model with its run's background.npz, or rebuild the index"

TABLE_COLUMNS = ("id", "key", "file", "page", "figure", "box", "paper", "figure_key", "sha256", "width", "height")
FORMAT_VERSION = 1


class ScreeningIndex:
    """An index folder in memory: FAISS index, panel table, metadata."""

    def __init__(self, folder: Path, faiss_index, table: list[dict], meta: dict, background=None):
        self.folder = Path(folder)
        self.faiss_index = faiss_index
        self.table = table
        self.meta = meta
        self.background = background if meta.get("normalised") else None
        self._panels: dict[int, Panel] = {}

    def __len__(self) -> int:
        return len(self.table)

    # -----------------------------------------------------------------------------------------

    @classmethod
    def create(cls, folder, scorer, kind: str = "hnsw", normalise: bool = False) -> "ScreeningIndex":
        from keras_forensics.screening.pairs import build_faiss_index

        folder = Path(folder)
        if (folder / "meta.json").exists():
            raise ForensicsError(f"{folder} already holds an index; use `index add` to extend it")
        (folder / "panels").mkdir(parents=True, exist_ok=True)
        if normalise and scorer.background is None:
            raise ForensicsError(f"--normalise: the model has no background set ({BACKGROUND_HELP})")
        normalised = bool(normalise)
        meta = {"format": FORMAT_VERSION, "model": scorer.source, "fingerprint": scorer.fingerprint().tolist(),
                "dimension": scorer.dimension, "kind": kind, "count": 0, "normalised": normalised,
                **scorer.describe()}
        faiss_index = build_faiss_index(None, kind, dimension=scorer.dimension + normalised, metric=scorer.metric)
        return cls(folder, faiss_index, [], meta, scorer.background if normalised else None)

    @classmethod
    def open(cls, folder, scorer=None, normalised: bool | None = None) -> "ScreeningIndex":
        """Open an index; with `scorer`, check it embeds like the model that built the index;
        with `normalised`, that its rows are for that kind of search (`index build --normalise`)."""
        from keras_forensics.screening.model import same_model
        from keras_forensics.screening.pairs import faiss_module

        folder = Path(folder)
        if not (folder / "meta.json").is_file():
            raise ForensicsError(f"--index {folder}: not an index folder (no meta.json); "
                                 "make one with `python -m keras_forensics index build DIR --out INDEX_DIR`")
        faiss = faiss_module()
        meta = json.loads((folder / "meta.json").read_text())
        if scorer is not None and not same_model(meta["fingerprint"], scorer.fingerprint()):
            raise ForensicsError(f"--index {folder} was built with another model ({meta['model']}); "
                                 f"screen it with that model, or rebuild the index with {scorer.source}")
        with open(folder / "panels.csv", newline="", encoding="utf-8") as handle:
            table = list(csv.DictReader(handle))
        faiss_index = faiss.read_index(str(folder / "panels.faiss"))
        if faiss_index.ntotal != len(table):
            raise ForensicsError(f"{folder}: panels.faiss holds {faiss_index.ntotal} panels but panels.csv "
                                 f"{len(table)}; the index is damaged, rebuild it")
        if normalised is not None and bool(meta.get("normalised")) != normalised:
            built, asked = ("with", "without") if meta.get("normalised") else ("without", "with")
            raise ForensicsError(f"--index {folder} was built {built} --normalise and this screen runs {asked} it; "
                                 f"screen it {built} --normalise, or rebuild the index")
        background = None if scorer is None else scorer.background
        if meta.get("normalised") and background is None:
            raise ForensicsError(f"--index {folder} holds normalised rows but the model has no background set "
                                 f"({BACKGROUND_HELP})")
        return cls(folder, faiss_index, table, meta, background)

    def save(self) -> None:
        from keras_forensics.screening.pairs import faiss_module

        faiss = faiss_module()
        self.meta["count"] = len(self.table)
        temporary = self.folder / ".panels.faiss.tmp"
        faiss.write_index(self.faiss_index, str(temporary))
        os.replace(temporary, self.folder / "panels.faiss")
        temporary = self.folder / ".panels.csv.tmp"
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
            writer.writeheader()
            writer.writerows(self.table)
        os.replace(temporary, self.folder / "panels.csv")
        temporary = self.folder / ".meta.json.tmp"
        temporary.write_text(json.dumps(self.meta, indent=2) + "\n")
        os.replace(temporary, self.folder / "meta.json")

    # -----------------------------------------------------------------------------------------

    def add(self, inputs, scorer, split: str = "pdf", min_size: int = panels_lib.MIN_PANEL_SIZE,
            progress: bool = True, max_pixels: int | None = None) -> dict:
        """Embed and add every panel of `inputs`; returns counts and the problems met."""
        from tqdm.auto import tqdm

        problems: list[panels_lib.Problem] = []
        files = panels_lib.expand_inputs(inputs, problems)
        known = {row["sha256"] for row in self.table}
        added = skipped = 0
        for path in tqdm(files, desc="indexing", unit="file", disable=not progress):
            collection = panels_lib.collect([path], split=split, min_size=min_size, skip_sha256=known,
                                            max_pixels=io.pixel_limit(max_pixels))
            problems.extend(collection.problems)
            if not collection.panels:
                if collection.files_read == 0 and not collection.problems:
                    skipped += 1  # already indexed
                continue
            vectors = scorer.embed_panels([p.image for p in collection.panels], progress=False)
            self.add_embedded(collection.panels, vectors)
            known.add(collection.panels[0].sha256)
            added += len(collection.panels)
        self.save()
        return {"panels_added": added, "files_already_indexed": skipped, "panels_total": len(self.table),
                "problems": [str(p) for p in problems]}

    def add_embedded(self, panels, vectors: np.ndarray) -> None:
        """Add `panels` whose weighted embeddings `vectors` [N, D] were computed already (by the
        index's model, each panel as it is): their crops, table rows and vectors. `save` writes
        the table and the FAISS index."""
        import cv2

        if len(panels) != len(vectors):
            raise ForensicsError(f"{len(panels)} panels but {len(vectors)} embeddings")
        for panel in panels:
            number = len(self.table)
            key = f"{number:07d}_{panel.key.split('_', 1)[-1]}"
            cv2.imwrite(str(self.folder / "panels" / f"{key}.png"),
                        np.clip(np.round(panel.image * 255), 0, 255).astype(np.uint8))
            self.table.append({
                "id": number, "key": key, "file": panel.file,
                "page": "" if panel.page is None else panel.page,
                "figure": "" if panel.figure is None else panel.figure,
                "box": ",".join(str(v) for v in panel.box), "paper": panel.paper,
                "figure_key": panel.figure_key, "sha256": panel.sha256,
                "width": panel.figure_size[0], "height": panel.figure_size[1]})
        if len(vectors):
            if self.background is not None:
                vectors, _ = self.background.augment(vectors, self.background.offsets(vectors))
            self.faiss_index.add(np.ascontiguousarray(vectors, np.float32))

    def query(self, vectors: np.ndarray, threshold: float, k: int = 0):
        """(query row, index id, distance) within `threshold` of each query, plus its k nearest.

        `vectors` [N, D], or [N, T, D] with each query in T orientations: every orientation is
        looked up, the rows refer to the N queries, and each (query, entry) pair comes once, at its
        smallest distance over the orientations. A `normalised` index answers in f_norm, and
        `threshold` is one on f_norm."""
        from keras_forensics.screening.pairs import query_index

        vectors = np.asarray(vectors, np.float32)
        oriented = vectors if vectors.ndim == 3 else vectors[:, None]
        count, turns, _ = oriented.shape
        queries = oriented.transpose(1, 0, 2).reshape(count * turns, -1)
        background = self.background
        if background is None:
            rows, ids, distances = query_index(self.faiss_index, queries, threshold, k)
        else:
            offsets = background.offsets(oriented[:, 0])
            admit = np.isfinite(threshold) and threshold >= 0
            limits = background.search_threshold(threshold, offsets) if admit else None
            rows, ids, distances = query_index(self.faiss_index, background.query_rows(queries),
                                               float(np.max(limits)) if admit else threshold, k)
            if admit:
                keep = (distances <= limits[rows % count]) | _ranks_below(rows, distances, k)
                rows, ids, distances = rows[keep], ids[keep], distances[keep]
            distances = background.from_search(distances, offsets[rows % count])
        if vectors.ndim == 2:
            return rows, ids, distances
        rows = rows % max(count, 1)
        order = np.lexsort((distances, ids, rows))
        rows, ids, distances = rows[order], ids[order], distances[order]
        first = np.ones(len(rows), bool)
        first[1:] = (rows[1:] != rows[:-1]) | (ids[1:] != ids[:-1])
        return rows[first], ids[first], distances[first]

    def panel(self, number: int) -> Panel:
        """The indexed panel `number` with its crop read back (once)."""
        from keras_forensics.data.io import read_image

        if number in self._panels:
            return self._panels[number]
        row = self.table[number]
        box = tuple(int(v) for v in row["box"].split(","))
        image = read_image(self.folder / "panels" / f"{row['key']}.png")
        panel = Panel(image, row["file"], int(row["page"]) if row["page"] else None,
                      int(row["figure"]) if row["figure"] else None, box, row["paper"], row["figure_key"],
                      key=f"index_{row['key']}", figure_size=(int(row["width"]), int(row["height"])),
                      sha256=row["sha256"])
        self._panels[number] = panel
        return panel


def _ranks_below(rows: np.ndarray, distances: np.ndarray, k: int) -> np.ndarray:
    """Whether each found (row, distance) is among its row's k nearest found (the shortlist)."""
    keep = np.zeros(len(rows), bool)
    if not k or not len(rows):
        return keep
    order = np.lexsort((distances, rows))
    sorted_rows = rows[order]
    starts = np.r_[0, np.nonzero(sorted_rows[1:] != sorted_rows[:-1])[0] + 1]
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    keep[order] = rank < k
    return keep


def build(inputs, out, scorer, kind: str = "hnsw", normalise: bool = False, **options) -> dict:
    """`index build`: a new index at `out` holding every panel of `inputs` (`normalise`: rows
    for normalised searches, `background.Background.augment`)."""
    index = ScreeningIndex.create(out, scorer, kind, normalise)
    return index.add(inputs, scorer, **options)


def add(inputs, index_dir, scorer, **options) -> dict:
    """`index add`: more panels into an existing index (same model)."""
    index = ScreeningIndex.open(index_dir, scorer=scorer)
    return index.add(inputs, scorer, **options)
