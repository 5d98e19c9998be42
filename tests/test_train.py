"""The trainer: reproducible, stops when told, turns divergence and Ctrl-C into results, caches runs."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from curse_of_depth import train as train_mod
from curse_of_depth.model import ModelConfig, build_model
from curse_of_depth.train import (
    TrainConfig,
    load_checkpoint,
    lr_at,
    make_optimizer,
    save_checkpoint,
    train,
)
from curse_of_depth.workshop import train_cli
from curse_of_depth.workshop.live import train_or_load

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_training import MC, learnable_corpus, tc  # noqa: E402


@pytest.fixture(scope="module")
def corpus():
    return learnable_corpus()


def test_same_seed_gives_identical_curves_and_another_seed_does_not(corpus):
    a = train(MC, tc(), corpus, progress=False)
    b = train(MC, tc(), corpus, progress=False)
    c = train(MC, tc(seed=1), corpus, progress=False)
    assert a.train_curve == b.train_curve and a.val_curve == b.val_curve
    assert a.train_curve != c.train_curve
    assert [s for s, _ in a.train_curve] == list(range(1, 21))
    assert a.val_steps == [0, 10, 20]
    assert a.final_val == a.val_curve[-1][1] < a.val_curve[0][1]  # it learns
    assert (a.steps_done, a.stop_reason, a.diverged, a.interrupted) == (20, "max_steps", False, False)
    assert a.tokens_seen == 20 * 4 * 32 and a.tokens_per_s > 0 and a.wall_s > 0


def test_huge_learning_rate_is_a_diverged_result_not_a_crash(corpus):
    r = train(MC, tc(lr=100.0, max_steps=40), corpus, progress=False)
    assert r.diverged and r.stop_reason == "diverged" and r.diverged_reason
    assert r.steps_done < 40
    json.dumps(r.to_dict(), allow_nan=False)  # still strict JSON, NaN or not
    ok = train(MC, tc(max_steps=40), corpus, progress=False)  # the same run at a sane lr is not flagged
    assert not ok.diverged


def test_exploding_but_finite_loss_counts_as_diverged(corpus, monkeypatch):
    # a loss that grows to 3x the initial one after warmup, while staying finite
    r = train(MC, tc(max_steps=20, lr=3e-3, diverge_factor=1.01), corpus, progress=False)
    assert not r.diverged  # the loss falls, so even a tight factor never fires
    calls = {"n": 0}
    real_forward = train_mod.CausalLM.forward

    def inflating_forward(self, idx, targets=None, **kw):
        out = real_forward(self, idx, targets, **kw)
        calls["n"] += 1
        if targets is not None and self.training and calls["n"] > 5:
            out.loss = out.loss * 3.0
        return out

    monkeypatch.setattr(train_mod.CausalLM, "forward", inflating_forward)
    r = train(MC, tc(max_steps=20, warmup_frac=0.1), corpus, progress=False)
    assert r.diverged and "exceeds" in r.diverged_reason and math.isfinite(r.train_curve[-1][1])


def test_interrupt_returns_the_partial_run(corpus):
    def ctrl_c(step, model, result):
        if step == 10:
            raise KeyboardInterrupt

    r = train(MC, tc(max_steps=40), corpus, progress=False, callback=ctrl_c)
    assert r.interrupted and r.stop_reason == "interrupted" and not r.diverged
    assert r.steps_done == 10 and len(r.train_curve) == 10 and r.val_steps == [0, 10]
    assert r.model is not None and r.final_val == r.val_curve[-1][1]


def test_callback_sees_eval_points_and_can_stop_the_run(corpus):
    seen = []

    def cb(step, model, result):
        seen.append((step, len(result.val_curve), model.training))
        return step >= 10

    r = train(MC, tc(max_steps=40), corpus, progress=False, callback=cb)
    assert [s for s, _, _ in seen] == [0, 10] and r.steps_done == 10 and r.stop_reason == "callback"
    assert all(not training for _, _, training in seen)  # callbacks see the model in eval mode


def test_max_seconds_stops_before_max_steps(corpus):
    r = train(MC, tc(max_steps=100_000, max_seconds=0.5, eval_every=10_000), corpus, progress=False)
    assert r.stop_reason == "max_seconds" and 0 < r.steps_done < 100_000
    assert r.val_steps[-1] == r.steps_done  # a final validation point even when stopped by the clock


def test_lr_schedule_warmup_then_cosine_defined_by_max_steps():
    cfg = TrainConfig(max_steps=100, lr=1.0, warmup_frac=0.1, min_lr_frac=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_weight_decay_only_on_matrices_and_embeddings():
    model = build_model(MC)
    opt = make_optimizer(model, tc(weight_decay=0.1))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert any(p is model.tok_emb.weight for p in decayed["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("kw, match", [
    (dict(max_steps=0), "max_steps"), (dict(max_steps=-5), "max_steps"),
    (dict(max_seconds=0), "max_seconds"), (dict(max_seconds=-1.0), "max_seconds"),
    (dict(batch_size=0), "batch_size"), (dict(seq_len=0), "seq_len"), (dict(lr=0.0), "lr"),
    (dict(lr=float("nan")), "lr"), (dict(eval_every=0), "eval_every"), (dict(dtype="fp8"), "dtype"),
    (dict(warmup_frac=1.0), "warmup_frac"), (dict(diverge_factor=1.0), "diverge_factor"),
])
def test_bad_train_config_raises_naming_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        tc(**kw)


def test_bad_combinations_raise_naming_the_fix(corpus):
    with pytest.raises(ValueError, match="ModelConfig.seq_len"):
        train(MC, tc(seq_len=64), corpus, progress=False)
    with pytest.raises(ValueError, match="vocab_size"):
        train(ModelConfig(vocab_size=4, d_model=32, n_layers=1, n_heads=4, seq_len=32), tc(), corpus, progress=False)
    with pytest.raises(ValueError, match="GPU only"):
        train(MC, tc(dtype="bf16"), corpus, progress=False)
    with pytest.raises(ValueError, match="state_dir"):
        train(MC, tc(), corpus, progress=False, checkpoint_every=5)


def test_result_json_round_trip(tmp_path, corpus):
    r = train(MC, tc(max_steps=5), corpus, progress=False)
    path = train_cli.save_result(r, tmp_path / "r.json", provenance={"command": "test"})
    back = train_cli.load_result(path)
    assert back == r  # dataclass equality ignores the model
    assert json.loads(path.read_text())["provenance"] == {"command": "test"}
    assert back.train_config.betas == (0.9, 0.95)


def test_checkpoint_round_trip_gives_identical_logits(tmp_path, corpus):
    r = train(MC, tc(max_steps=5), corpus, progress=False)
    path = save_checkpoint(r.model, tmp_path / "m.safetensors", r)
    model, back = load_checkpoint(path)
    x = corpus.val[:32][None]
    r.model.eval()
    assert torch.equal(model(x).logits, r.model(x).logits)
    assert back == r and model.cfg == MC
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):  # noqa: B017 - safetensors raises its own error type for garbage
        load_checkpoint(tmp_path / "bad.safetensors")


def test_train_or_load_loads_the_second_time_without_training(tmp_path, corpus, monkeypatch):
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    first = train_or_load(MC, tc(max_steps=5), corpus=corpus, progress=False)
    assert not first.from_cache

    def no_training(*a, **k):
        raise AssertionError("train() was called although a cached run exists")

    monkeypatch.setattr(train_mod, "train", no_training)
    second = train_or_load(MC, tc(max_steps=5), corpus=corpus, progress=False)
    assert second.from_cache and second == first
    x = corpus.val[:32][None]
    assert torch.equal(second.model.eval()(x).logits, first.model.eval()(x).logits)
    with pytest.raises(AssertionError, match="cached run exists"):  # another config is another key
        train_or_load(MC, tc(max_steps=6), corpus=corpus, progress=False)
    # a damaged checkpoint fails its checksum and is trained again
    ckpt = next(tmp_path.rglob("model.safetensors"))
    ckpt.write_bytes(ckpt.read_bytes()[:-8] + b"\0" * 8)
    monkeypatch.undo()
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    third = train_or_load(MC, tc(max_steps=5), corpus=corpus, progress=False)
    assert not third.from_cache and third.train_curve == first.train_curve


def test_resume_continues_exactly_where_the_state_was_saved(tmp_path, corpus):
    full = train(MC, tc(max_steps=20, eval_every=10), corpus, progress=False)

    def ctrl_c(step, model, result):
        if step == 10:
            raise KeyboardInterrupt

    cut = train(MC, tc(max_steps=20, eval_every=10), corpus, progress=False, callback=ctrl_c,
                state_dir=tmp_path, checkpoint_every=5)
    assert cut.interrupted and train_mod.read_state(tmp_path)[1]["result"]["steps_done"] == 5
    assert len(list(tmp_path.glob("state-*"))) == 2  # one pair: the older one is gone
    resumed = train(MC, tc(max_steps=20, eval_every=10), corpus, progress=False, state_dir=tmp_path, resume=True)
    assert resumed.train_curve == full.train_curve and resumed.val_curve == full.val_curve
    with pytest.raises(ValueError, match="other configs"):
        train(MC, tc(max_steps=30), corpus, progress=False, state_dir=tmp_path, resume=True)


@pytest.mark.parametrize("crash_in", ["atomic_write_bytes", "atomic_write_json"])
def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_state(tmp_path, corpus, monkeypatch, crash_in):
    """Issue 16: a crash in the weights file, or between it and its metadata, must not brick resume."""
    full = train(MC, tc(max_steps=20, eval_every=10), corpus, progress=False)
    real, writes = getattr(train_mod._files, crash_in), []

    def crash_on_second_checkpoint(path, data):
        writes.extend([path] if str(path).endswith(".pt" if crash_in == "atomic_write_bytes" else ".json") else [])
        if len(writes) == 2:  # the second checkpoint (step 10): the new weights, or the metadata after them
            if crash_in == "atomic_write_bytes":
                real(path, data[: len(data) // 2])  # a torn file under the final name, then the crash
            raise KeyboardInterrupt
        return real(path, data)

    monkeypatch.setattr(train_mod._files, crash_in, crash_on_second_checkpoint)
    cut = train(MC, tc(max_steps=20, eval_every=10), corpus, progress=False, state_dir=tmp_path,
                checkpoint_every=5)
    monkeypatch.undo()
    assert cut.interrupted and cut.steps_done == 10
    assert train_mod.read_state(tmp_path)[1]["step"] == 5  # the previous state, intact
    resumed = train(MC, tc(max_steps=20, eval_every=10), corpus, progress=False, state_dir=tmp_path, resume=True)
    assert resumed.train_curve == full.train_curve and resumed.val_curve == full.val_curve


def test_resume_without_a_state_names_the_fix_in_python_terms(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="checkpoint_every") as err:
        train(MC, tc(), corpus, progress=False, state_dir=tmp_path, resume=True)
    assert "--" not in str(err.value)  # a Python caller is not told about command-line flags


# ------------------------------------------------------------------------------------------------ CLI

TINY_FLAGS = ["--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--seq-len", "32", "--max-steps", "6",
              "--batch-size", "2", "--eval-every", "3", "--eval-batches", "2", "--eval-batch-size", "2",
              "--no-progress", "--device", "cpu"]


def test_cli_writes_results_with_provenance_and_resume_skips_finished_seeds(tmp_path, capsys):
    out = tmp_path / "runs"
    assert train_cli.main([*TINY_FLAGS, "--norm", "lns", "--seeds", "0,1", "--out", str(out)]) == 0
    for seed in (0, 1):
        saved = json.loads((out / f"seed{seed}" / "result.json").read_text())
        assert saved["provenance"]["seeds"] == [seed] and "code_version" in saved["provenance"]
        assert saved["model_config"]["norm"] == "lns" and saved["train_config"]["seq_len"] == 32
        model, result = load_checkpoint(out / f"seed{seed}" / "model.safetensors")
        assert result.steps_done == 6 and model.cfg.norm == "lns"
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines() if s.startswith("{")]
    assert [r["seed"] for r in lines] == [0, 1] and all(math.isfinite(r["final_val"]) for r in lines)
    assert train_cli.main([*TINY_FLAGS, "--norm", "lns", "--seeds", "0,1", "--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().out.count("already complete") == 2


def test_cli_config_file_and_flag_override(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"norm": "post", "n_layers": 1, "d_model": 16, "n_heads": 2, "seq_len": 32},
                               "train": {"max_steps": 4, "batch_size": 2, "eval_batches": 1, "eval_batch_size": 2,
                                         "device": "cpu"}}))
    assert train_cli.main(["--config", str(cfg), "--max-steps", "3", "--no-progress"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["steps_done"] == 3


@pytest.mark.parametrize("flags, match", [
    (["--max-steps", "0"], "max_steps"), (["--seeds", "a,b"], "seeds"), (["--resume"], "--out"),
    (["--train-seq-len", "64"], "ModelConfig.seq_len"), (["--norm", "deep"], "unknown norm"),
])
def test_cli_bad_input_exits_with_the_reason(flags, match, capsys):
    with pytest.raises((SystemExit, ValueError)) as err:
        train_cli.main([*TINY_FLAGS, *flags])
    text = capsys.readouterr().err + str(err.value)
    assert match in text


def test_ranks_draw_different_batches_from_the_same_seed(corpus):
    a = corpus.get_batch("train", 4, 16, train_mod.data_generator(0, rank=0))[0]
    b = corpus.get_batch("train", 4, 16, train_mod.data_generator(0, rank=1))[0]
    a2 = corpus.get_batch("train", 4, 16, train_mod.data_generator(0, rank=0))[0]
    assert torch.equal(a, a2) and not torch.equal(a, b)


SPY = '''
import os, sys
import curse_of_depth._files as cache
import curse_of_depth.workshop.train_cli as cli
log = open(os.path.join(sys.argv[1], "writes_rank" + os.environ["RANK"] + ".txt"), "w")
real = cache.atomic_write_bytes
def spy(path, data):
    log.write(str(path) + "\\n"); log.flush()
    return real(path, data)
cache.atomic_write_bytes = spy
sys.exit(cli.main(sys.argv[2:]))
'''


def test_torchrun_two_ranks_on_cpu_gloo(tmp_path):
    """DistributedDataParallel on CPU (gloo): finite all-reduced loss, global token count, only rank 0 writes."""
    import os
    import subprocess
    import sys

    script = tmp_path / "spy.py"
    script.write_text(SPY)
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path), *TINY_FLAGS, "--out", str(out), "--checkpoint-every", "3"]
    env = {**os.environ, "COD_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((out / "seed0" / "result.json").read_text())
    assert saved["world_size"] == 2 and saved["steps_done"] == 6
    assert saved["tokens_seen"] == 6 * 2 * 32 * 2  # both ranks' batches count
    assert all(v is not None and math.isfinite(v) for v in saved["train_loss"] + saved["val_loss"])
    rank0 = (tmp_path / "writes_rank0.txt").read_text().split()
    rank1 = (tmp_path / "writes_rank1.txt").read_text().split()
    assert rank1 == [] and any(p.endswith("result.json") for p in rank0)
    assert any(p.endswith(".pt") for p in rank0) and any(p.endswith("model.safetensors") for p in rank0)


def test_python_m_curse_of_depth_train_runs_the_command_line():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "curse_of_depth.train", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--checkpoint-every" in out.stdout
