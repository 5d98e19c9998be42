"""The scale map's bookkeeping: paired aggregation, verdicts, missing points, the runner/CLI, bands, GCIDE cleaning."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import ttest_rel

from curse_of_depth.model import ModelConfig, build_model
from curse_of_depth.workshop import corpora, sweep

ARMS = (sweep.Arm("pre", 3e-3), sweep.Arm("lns", 3e-3))


def point(L=24, seeds=(0, 1, 2)):
    return sweep.Point("gcide", 128, L, 8 * sweep.M, ARMS, seeds=seeds)


def rec(p, arm, seed, loss, diverged=False, skip=(0.01, 0.02)):
    return {"point": p.key, "arm": arm.key, "norm": arm.norm, "seed": seed, "final_eval": None if diverged else loss,
            "diverged": diverged, "skip_delta": [] if diverged else list(skip), "skip_layers": [23, 24],
            "run": {"tokens_per_s": 1.0}}


def records(p, pre, lns):
    return [rec(p, ARMS[0], s, v) for s, v in zip(p.seeds, pre)] + [rec(p, ARMS[1], s, v) for s, v in zip(p.seeds, lns)]


def test_paired_gap_is_lns_minus_pre_by_seed_with_sample_sd():
    p = point()
    pre, lns = [2.0, 2.2, 2.1], [1.8, 1.9, 1.85]
    row = sweep.summarize([p], records(p, pre, lns))[0]
    g = row["gap_same_lr"]
    diffs = np.array(lns) - np.array(pre)
    assert g["diffs"] == pytest.approx(diffs.tolist())
    assert g["mean"] == pytest.approx(diffs.mean())
    assert g["sd"] == pytest.approx(diffs.std(ddof=1))
    assert g["p"] == pytest.approx(ttest_rel(lns, pre).pvalue)
    assert g["b_better"] == 3 and g["winner"] == "lns"
    assert row["arms"]["pre@0.003"]["mean"] == pytest.approx(np.mean(pre))
    assert row["gap_own_lr"] is None  # no LNS@1e-2 arm at this point


def test_verdict_flips_with_the_sign_and_needs_a_paired_difference():
    p = point()
    assert sweep.summarize([p], records(p, [1.0, 1.01, 1.02], [1.1, 1.11, 1.12]))[0]["gap_same_lr"]["winner"] == "pre"
    none = sweep.summarize([p], records(p, [1.0, 1.2, 1.4], [0.97, 1.23, 1.38]))[0]
    assert none["gap_same_lr"]["winner"] is None
    assert "no clear difference between Pre-LN and LNS (3 paired seeds: 2 favour LNS, 1 favour Pre-LN" in \
        sweep.map_verdict(none)
    win = sweep.summarize([p], records(p, [2.0, 2.2, 2.1], [1.8, 1.9, 1.85]))[0]
    lose = sweep.summarize([p], records(p, [1.8, 1.9, 1.85], [2.0, 2.2, 2.1]))[0]
    assert "LNS reaches a lower validation loss than Pre-LN (3 paired seeds: 3 favour LNS, 0 favour Pre-LN; " \
           "paired t-test p < 0.05)" in sweep.map_verdict(win)
    assert "Pre-LN reaches a lower validation loss than LNS (3 paired seeds: 0 favour LNS, 3 favour Pre-LN" in \
        sweep.map_verdict(lose)
    for line in (sweep.map_verdict(win), sweep.map_verdict(none)):
        rest = line.replace(p.key, "").replace("p < 0.05", "").replace("p >= 0.05", "")
        assert "." not in rest, "verdict lines carry counts and the test's level, no measured floats"


def test_missing_points_and_completeness():
    p, q = point(24), point(48)
    recs = records(p, [1, 1, 1], [1, 1, 1]) + records(q, [1, 1, 1], [1, 1, 1])[:-1]  # q lacks lns seed 2
    assert [r["complete"] for r in sweep.summarize([p, q], recs)] == [True, False]
    assert sweep.missing([p, q], recs) == [{"point": q.key, "arm": "lns@0.003", "seeds": [2]}]
    # a diverged run is a result: the point stays complete, and the gap pairs only the finite seeds
    recs2 = records(p, [1.0, 1.1, 1.2], [0.9, 1.0, 1.1])
    recs2[-1] = rec(p, ARMS[1], 2, None, diverged=True)
    row = sweep.summarize([p], recs2)[0]
    assert row["complete"] and row["arms"]["lns@0.003"]["diverged"] == 1 and row["gap_same_lr"]["n"] == 2
    assert sweep.missing([p], recs2) == []


def test_stored_map_claim_fails_when_a_run_is_removed():
    p = sweep.map_grid()[0]
    recs = [rec(p, a, s, 1.0 + 0.01 * s) for a in p.arms for s in p.seeds]
    data = {"grid": "map", "summary": sweep.summarize([p], recs), "runs": recs}
    ok, listed = sweep.stored_map_complete(data)
    assert ok and listed == [p.key]
    broken = dict(data, runs=recs[1:])
    assert not sweep.stored_map_complete(broken)[0]
    no_skip = [dict(r, skip_delta=[]) for r in recs]
    assert not sweep.stored_map_complete(dict(data, runs=no_skip))[0]


def test_redundancy_stats():
    p = point()
    recs = [rec(p, ARMS[0], s, 1.0, skip=(0.001, 0.02)) for s in p.seeds]
    red = sweep.redundancy(sweep.arm_table(recs)[p.key]["pre@0.003"])
    assert red["mean_delta"] == pytest.approx(0.0105) and red["cheap_share"] == pytest.approx(0.5)
    assert red["min_delta"] == pytest.approx(0.001) and red["n"] == 3


def test_point_validation_and_grids():
    with pytest.raises(ValueError, match="less than one batch"):
        sweep.Point("gcide", 128, 12, 100, ARMS)
    with pytest.raises(ValueError, match="at least one arm"):
        sweep.Point("gcide", 128, 12, 8 * sweep.M, ())
    with pytest.raises(ValueError, match="unknown grid"):
        sweep.grid("nope")
    keys = [p.key for p in sweep.map_grid()]
    assert len(keys) == len(set(keys))
    assert point().steps == round(8 * sweep.M / (128 * 256))
    assert sweep.deep_third(24) == list(range(17, 25)) and sweep.deep_third(2) == [2]
    job = sweep.Job(point(), sweep.Arm("lns", 1e-3, "paper"), 2, compile=False)
    assert sweep.Job.from_spec(json.loads(json.dumps(job.spec()))) == job


def test_skip_costs_equal_deleting_each_block():
    from curse_of_depth.hf import without_layers

    cfg = ModelConfig(vocab_size=17, d_model=16, n_layers=4, n_heads=2, seq_len=8)
    model = build_model(cfg, seed=3).eval()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 17, (2, 8), generator=g), torch.randint(0, 17, (2, 8), generator=g))
               for _ in range(2)]
    base, deltas = sweep.skip_costs(model, batches, "cpu", lambda: torch.autocast("cpu", enabled=False))
    with torch.no_grad():
        ref = np.mean([model(x, y).loss.item() for x, y in batches])
        assert base == pytest.approx(ref, abs=1e-6)
        for i, d in enumerate(deltas):
            with without_layers(model, [i]):
                assert d == pytest.approx(np.mean([model(x, y).loss.item() for x, y in batches]) - ref, abs=1e-5)


def test_runner_and_cli_on_a_tiny_cpu_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("COD_THREADS", "1")
    p = sweep.tiny_grid()[0]
    jobs = sweep.jobs_for([p])
    out = tmp_path / "runs"
    # one job through a real worker process (the runner), the rest in-process through the CLI's worker command
    report = sweep.run_jobs(jobs[:1], out, gpus=(), per_device=1, log=lambda *_: None)
    assert report.finished == [jobs[0].name] and not report.failed
    for job in jobs[1:]:
        assert sweep.main(["worker", "--spec", json.dumps(job.spec()), "--out", str(out / f"{job.name}.json")]) == 0
    rec0 = json.loads((out / f"{jobs[0].name}.json").read_text())
    assert math.isfinite(rec0["final_eval"]) and rec0["skip_layers"] == list(range(1, p.n_layers + 1))
    assert rec0["run"]["steps_done"] == p.steps
    # a second runner call skips what exists; a deadline of 0 starts nothing
    again = sweep.run_jobs(jobs, out, per_device=1, log=lambda *_: None)
    assert again.finished == [] and again.not_started == []
    res = tmp_path / "res"
    assert sweep.main(["collect", "--grid", "tiny", "--runs", str(out), "--results-dir", str(res),
                       "--command", "test"]) == 0
    stored = json.loads((res / "scale_map.json").read_text())
    assert stored["provenance"]["command"] == "test"
    summary = {r["point"]["key"]: r for r in stored["data"]["summary"]}
    assert summary[p.key]["complete"] and summary[p.key]["gap_same_lr"]["n"] == 3
    assert {m["point"] for m in stored["data"]["missing"]} == {sweep.tiny_grid()[1].key}
    # COD_MODE=full: extending a stored map runs only its missing point and keeps the stored runs
    part = [r for r in stored["data"]["runs"]]
    extended = sweep.extend_stored_map("scale_map", "tiny", gpus=[], per_device=2, results_folder=res,
                                       work_dir=tmp_path / "extend")
    assert len(extended["data"]["runs"]) == len(part) + 6 and extended["data"]["missing"] == []
    late = sweep.run_jobs(sweep.jobs_for(sweep.tiny_grid()[1:]), tmp_path / "late", deadline_s=0.0,
                          estimate_s=lambda j: 1.0, log=lambda *_: None)
    assert late.finished == [] and len(late.not_started) == 6


def test_bands_are_written_in_the_agreed_format(tmp_path):
    from curse_of_depth import stats

    for norm in sweep.BAND_NORMS:
        sweep.run_band_group("smoke", norm, [0, 1], tmp_path / f"band_smoke_{norm}.json", checkpoint_dir=tmp_path)
    assert sweep.collect_bands(tmp_path, "test", results_folder=tmp_path / "res") == ["smoke"]
    stored = json.loads((tmp_path / "res" / "bands_smoke.json").read_text())
    data = stored["data"]
    assert "norm" not in data["model"] and data["model"]["n_layers"] == 4 and data["train"]["max_steps"] == 30
    assert set(data["runs"]) == set(sweep.BAND_NORMS) and all(len(v) == 2 for v in data["runs"].values())
    bands = stats.bands_from_data(data)
    assert bands["pre"].seeds == [0, 1] and bands["pre"].steps.tolist() == [0, 10, 20, 30]
    assert all(r["train_config"]["dtype"] == "fp32" for r in data["runs"]["lns"])
    (tmp_path / "band_smoke_mix.json").unlink()
    with pytest.raises(ValueError, match="lacks norms"):
        sweep.collect_bands(tmp_path, "test", save=False)
    with pytest.raises(ValueError, match="unknown band tag"):
        sweep.band_configs("nope", "pre", 0, 84)


def test_gcide_cleaning_and_split():
    raw = (b"00-database-short\n   GCIDE\n\nAbjure \\Ab*jure\"\\, v. t.\n   1. To renounce upon oath.\n"
           b"      [1913 Webster]\n\nAbjurer, n.\n   One who abjures. caf\xc3\xa9\n   [WordNet 1.5 +PJC]\n")
    entries = corpora.clean_gcide(raw)
    assert entries == ['Abjure \\Ab*jure"\\, v. t.\n1. To renounce upon oath.', "Abjurer, n.\nOne who abjures. caf"]
    train, val = corpora.split_entries([f"e{i}" for i in range(10)], per_block=2, val_every=5)
    assert val == ["e8", "e9"] and len(train) == 8
    with pytest.raises(ValueError):
        corpora.split_entries(["a"], per_block=2, val_every=5)


def test_a_killed_run_continues_from_its_state_and_ends_where_an_uninterrupted_run_ends(tmp_path, monkeypatch):
    """What lets a GPU call end at its deadline without losing the runs in flight (``--state-every``)."""
    from curse_of_depth import train as train_mod

    monkeypatch.setenv("COD_THREADS", "1")
    job = sweep.jobs_for(sweep.tiny_grid()[:1])[0]
    plain = sweep.run_job(job.spec(), tmp_path / "plain.json")
    resumable = sweep.Job(job.point, job.arm, job.seed, state_every=2)
    out = tmp_path / "runs" / f"{job.name}.json"
    real_step = train_mod._train_step

    def killed_at_step_3(run):
        if run.step == 3:
            raise KeyboardInterrupt  # what the deadline does to a worker, as the trainer sees it
        return real_step(run)

    monkeypatch.setattr(train_mod, "_train_step", killed_at_step_3)
    with pytest.raises(RuntimeError, match="interrupted at step 3"):
        sweep.run_job(resumable.spec(), out)
    assert not out.exists()  # no record of a half-trained run
    assert sweep.has_state(sweep.state_dir(out))
    monkeypatch.setattr(train_mod, "_train_step", real_step)
    rec = sweep.run_job(resumable.spec(), out)
    assert rec["resumed"] and not plain["resumed"]
    assert rec["run"]["steps_done"] == plain["run"]["steps_done"] == job.point.steps
    assert rec["run"]["train_loss"] == pytest.approx(plain["run"]["train_loss"], abs=1e-5)
    assert rec["final_eval"] == pytest.approx(plain["final_eval"], abs=1e-5)
    assert not sweep.state_dir(out).exists()  # recorded: the state it wrote is gone
