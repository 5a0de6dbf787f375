"""Screening for re-used images: retrieve with the Siamese network, confirm with geometry.

What a research-integrity officer runs on a manuscript's figures or a whole archive:

* `panels`: inputs (image files, folders, PDFs) -> panels with their provenance (file, page,
  figure, box), byte-identical files found before any network runs.
* `pdf`: embedded images of a PDF (pypdf) and the split of multi-panel figures into panels.
* `model`: a Siamese scorer loaded from a TF-Serving SavedModel, a run dir or a .keras file;
  it turns panels into weighted embeddings (alpha * embedding, so L1 between them is f).
* `pairs`: all pairs within a distance threshold, exactly (blockwise TensorFlow) or with FAISS
  (METRIC_L1, flat or HNSW).
* `verify`: the SIFT keypoint verifier (mirrored matching, ratio test, one match per keypoint,
  RANSAC), its transform, aligned overlay and shared-area mask.
* `scoring`: the combined score of Siamese p_same and verifier inliers, and its calibration.
* `index`: a corpus of panels embedded once (`index build` / `index add`), searched by `screen --index`.
* `groups`: confirmed pairs joined into re-use groups (connected components), each with a
  reference panel the other members are aligned to.
* `report`: pairs.csv and the self-contained report.html (one card per group, under 10 MB).
* `screener`: `Screener`, the Python API that ties these together (also `from keras_forensics import Screener`).

Importing this package is cheap; TensorFlow, OpenCV and FAISS are imported by the modules that use them.
"""
