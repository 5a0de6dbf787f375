"""keras_forensics.artifacts: the newest version of a model folder and where default models are."""

from keras_forensics import artifacts


def test_newest_version_is_the_highest_numbered_saved_model(tmp_path):
    for version in ("1", "2", "10", "11"):
        (tmp_path / "model" / version).mkdir(parents=True)
    for version in ("2", "10"):
        (tmp_path / "model" / version / "saved_model.pb").write_bytes(b"")
    (tmp_path / "model" / "99.tmp").mkdir()
    assert artifacts.newest_version(tmp_path / "model") == tmp_path / "model" / "10"  # 11 has no saved_model.pb
    assert artifacts.newest_version(tmp_path / "model" / "2") == tmp_path / "model" / "2"
    assert artifacts.newest_version(tmp_path / "missing") is None
    assert artifacts.existing_versions(tmp_path / "model") == [1, 2, 10, 11]


def test_default_model_is_found_in_the_working_directory_then_the_environment(tmp_path, monkeypatch):
    elsewhere = tmp_path / "models"
    (elsewhere / "detector").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(artifacts.MODELS_ENV, raising=False)
    assert artifacts.default_model("detector") == artifacts.MODELS_DIR / "detector"  # not found: named for messages
    monkeypatch.setenv(artifacts.MODELS_ENV, str(elsewhere))
    assert artifacts.default_model("detector") == elsewhere / "detector"
    (tmp_path / "saved_models" / "detector").mkdir(parents=True)
    assert artifacts.default_model("detector") == artifacts.MODELS_DIR / "detector"  # the working directory wins
