"""The results pack: checksummed JSON with provenance, found in a checkout and in an installed wheel."""

import json

import pytest

from curse_of_depth import _files
from curse_of_depth.workshop import results


def test_save_load_round_trip_with_provenance(tmp_path):
    prov = results.provenance(seeds=[0, 1], wall_s=1.234, command="python -m x")
    results.save("demo", {"a": [1, 2]}, prov, folder=tmp_path)
    loaded = results.load("demo", folder=tmp_path)
    assert loaded["data"] == {"a": [1, 2]}
    assert loaded["provenance"]["seeds"] == [0, 1] and loaded["provenance"]["command"] == "python -m x"
    assert set(loaded["provenance"]) >= {"code_version", "hardware", "wall_s", "date"}
    assert results.available(tmp_path) == ["demo"]


def test_edited_result_is_refused(tmp_path):
    results.save("demo", {"a": 1}, results.provenance(), folder=tmp_path)
    path = tmp_path / "demo.json"
    path.write_text(path.read_text().replace('"a": 1', '"a": 2'))
    with pytest.raises(ValueError, match="sha256"):
        results.load("demo", folder=tmp_path)


def test_missing_and_unlisted_results_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="COD_MODE=full"):
        results.load("nothing", folder=tmp_path)
    (tmp_path / "stray.json").write_text(json.dumps({"data": 1}))
    with pytest.raises(ValueError, match="not listed"):
        results.load("stray", folder=tmp_path)


def test_claim_prints_a_stable_verdict_or_raises(capsys):
    # returns None: a cell ending in claim(...) prints the line once, with no echoed Out[] copy
    assert results.claim("two is even", 2 % 2 == 0) is None
    assert capsys.readouterr().out == "CLAIM HOLDS: two is even\n"
    assert results.verdict("OWL wins") is None
    assert capsys.readouterr().out == "MEASURED: OWL wins\n"
    with pytest.raises(results.ClaimFailed, match="three is even"):
        results.claim("three is even", 3 % 2 == 0, detail="3 % 2 = 1")


def test_code_version_override(monkeypatch):
    monkeypatch.setenv("COD_CODE_VERSION", "abc123")
    assert results.code_version() == "abc123"


def test_results_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("COD_RESULTS_DIR", str(tmp_path))
    assert results.results_dir() == tmp_path
    monkeypatch.delenv("COD_RESULTS_DIR")
    assert results.results_dir() == _files.REPO_ROOT / "data" / "results"
    # an installed wheel has no checkout around it: the pack inside the package is used
    monkeypatch.setattr(_files, "REPO_ROOT", tmp_path / "site-packages")
    assert results.results_dir() == _files.PACKAGE_ROOT / "results_pack"


def test_the_package_copy_of_the_pack_is_the_checkout_pack():
    pack = _files.PACKAGE_ROOT / "results_pack"
    assert pack.is_dir(), "curse_of_depth/results_pack must link to data/results (it ships in the wheel)"
    shipped = set(p.name for p in (_files.REPO_ROOT / "data" / "results").iterdir())
    assert shipped and set(p.name for p in pack.iterdir()) == shipped
