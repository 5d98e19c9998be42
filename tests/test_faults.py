"""Issue 16: what a careless attendee (or a crash) does may not delete a file, lose a run or fail silently.

One section per item of the issue (item 2, atomic checkpoints, is tested with the trainer). Each test reproduces
the fault as it was reported and checks what happens now; README.md's "What the kit protects" table lists them.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from curse_of_depth import _files, hf
from curse_of_depth.data import Corpus
from curse_of_depth.model import ModelConfig, build_model
from curse_of_depth.train import RunResult, TrainConfig, load_checkpoint, save_checkpoint, train
from curse_of_depth.workshop import doctor, gguf, results
from curse_of_depth.workshop import memory as _memory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_training import MC, learnable_corpus, tc  # noqa: E402

# ------------------------------------------------------------------ 1. cache_path never deletes the user's files


def _user_folder(root: Path) -> Path:
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "thesis.txt").write_text("three years of work")
    return root


def test_cache_path_holding_user_files_is_refused_not_deleted(tmp_path):
    folder = _user_folder(tmp_path / "typo")
    t0 = time.perf_counter()
    with pytest.raises(FileExistsError, match=r"holds files the kit did not write \(notes/\).*cache_path"):
        hf.load_pretrained(cache_path=folder, progress=False)
    with pytest.raises(FileExistsError, match="never deletes"):
        gguf.convert_smollm2(folder, progress=False)
    assert time.perf_counter() - t0 < 5  # refused before any conversion work
    assert (folder / "notes" / "thesis.txt").read_text() == "three years of work"
    assert sorted(p.name for p in folder.iterdir()) == ["notes"]


def test_cache_path_dot_is_refused_and_the_working_folder_kept(tmp_path, monkeypatch):
    work = _user_folder(tmp_path / "work")
    monkeypatch.chdir(work)
    with pytest.raises(FileExistsError, match="current folder"):
        hf.load_pretrained(cache_path=".", progress=False)
    (work / "notes" / "thesis.txt").unlink()
    (work / "notes").rmdir()  # even an empty working folder is not replaced by a cache
    with pytest.raises(gguf.CacheFolderError, match="current folder"):
        gguf.smollm2_folder(".")
    assert work.is_dir() and Path.cwd() == work.resolve()
    assert not list(tmp_path.glob(".*"))  # no lock or temporary folder left beside it


def test_a_kit_cache_with_a_foreign_file_is_not_rebuilt_over_it(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"damaged")
    (folder / gguf._MANIFEST).write_text(json.dumps({"format": gguf._CACHE_FORMAT, "files": {"model.safetensors": "0"}}))
    assert gguf._foreign_entries(folder) == []  # the kit's own damaged cache: may be rebuilt
    (folder / "my_notes.md").write_text("mine")
    assert gguf._foreign_entries(folder) == ["my_notes.md"]
    with pytest.raises(gguf.CacheFolderError, match="my_notes.md"):
        gguf.smollm2_folder(folder)
    assert (folder / "my_notes.md").exists()


# ------------------------------------------------------------------ 3. HF_HUB_OFFLINE and the Hugging Face cache

_REPO, _PARTIAL, _COMMIT = "kit-tests/tiny-llama", "kit-tests/half-downloaded", "0123456789abcdef0123456789abcdef01234567"


def _fake_hub_cache(hf_home: Path) -> None:
    """The layout huggingface_hub downloads into (hub/models--org--name/snapshots/<commit>, refs/main), holding a
    tiny Llama saved with save_pretrained; a second repo lacks its weights (an interrupted download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    tk = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")
    for repo in (_REPO, _PARTIAL):
        base = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
        snap = base / "snapshots" / _COMMIT
        model.save_pretrained(snap)
        tok.save_pretrained(snap)
        (base / "refs").mkdir()
        (base / "refs" / "main").write_text(_COMMIT)
    (hf_home / "hub" / ("models--" + _PARTIAL.replace("/", "--")) / "snapshots" / _COMMIT / "model.safetensors").unlink()


_HUB_SCENARIOS = textwrap.dedent("""
    import json, os, sys, time
    from curse_of_depth import hf
    out = {}
    for offline in ("", "1"):  # online first: huggingface_hub reads HF_HUB_OFFLINE once, at its import
        os.environ["HF_HUB_OFFLINE"] = offline
        for name in sys.argv[1:]:
            t0 = time.perf_counter()
            try:
                model, tok = hf.load_pretrained(name)
                what = f"loaded {model.config.num_hidden_layers} layers"
            except hf.OfflineModelError as exc:
                what = str(exc)
            out[f"{offline or 'online'} {name}"] = [what, round(time.perf_counter() - t0, 2)]
    print(json.dumps(out))
""")


def test_offline_flag_uses_models_already_in_the_hf_cache(tmp_path):
    """'Download at home, go offline at the venue': HF_HUB_OFFLINE=1 loads what is cached and names what is not.
    Without the flag and without a network the error comes in seconds (not ~46 s of retries) with the hub's reason.
    The hub is an unreachable local port here, so the test means the same with or without internet."""
    _fake_hub_cache(tmp_path)
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_XET": "1"}
    env.pop("TRANSFORMERS_OFFLINE", None)
    proc = subprocess.run([sys.executable, "-c", _HUB_SCENARIOS, _REPO, _PARTIAL, "kit-tests/never-downloaded"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out[f"1 {_REPO}"][0] == "loaded 2 layers"
    assert out[f"online {_REPO}"][0] == "loaded 2 layers"  # the cache first: no network needed at all
    assert re.search(r"HF_HUB_OFFLINE is set .* part of it: .*model\.safetensors", out[f"1 {_PARTIAL}"][0])
    assert "no file of it is there" in out["1 kit-tests/never-downloaded"][0]
    unreachable, seconds = out["online kit-tests/never-downloaded"]
    assert "cannot be reached" in unreachable and "Error" in unreachable  # the hub's own reason, e.g. ConnectError
    assert seconds < 10, f"{seconds} s before the error (huggingface_hub alone retries for ~46 s)"
    assert "cannot be reached" in out[f"online {_PARTIAL}"][0]


def test_empty_model_name_names_the_fix():
    with pytest.raises(ValueError, match="empty: leave it out"):
        hf.load_pretrained("")
    with pytest.raises(ValueError, match="empty"):
        hf.load_pretrained("   ")


# ------------------------------------------------------------------ 4. every file of the results pack is checksummed


def _pack_with_checkpoint(folder: Path) -> Path:
    """A pack as shipped: a result, a checkpoint, and a manifest with the sha256 of both."""
    model = build_model(ModelConfig(vocab_size=16, d_model=16, n_layers=2, n_heads=2, seq_len=8))
    ckpt = save_checkpoint(model, folder / "ckpt_tiny_pre.safetensors")
    results.save("bands_tiny", {"x": [1]}, results.provenance(), folder=folder)
    manifest = json.loads((folder / results.MANIFEST).read_text())
    manifest[ckpt.name] = _files.sha256_file(ckpt)
    (folder / results.MANIFEST).write_text(json.dumps(manifest))
    return ckpt


def _data_start(path: Path) -> int:
    (header,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header


def test_a_checkpoint_with_inf_bytes_is_refused_by_loader_and_doctor(tmp_path, monkeypatch):
    ckpt = _pack_with_checkpoint(tmp_path)
    blob = bytearray(ckpt.read_bytes())
    start = _data_start(ckpt)
    blob[start + 64: start + 68] = struct.pack("<f", math.inf)
    ckpt.write_bytes(bytes(blob))
    model, _ = load_checkpoint(ckpt)  # the fault: the plain loader takes it silently
    assert any(torch.isinf(p).any() for p in model.parameters())
    monkeypatch.setenv("COD_RESULTS_DIR", str(tmp_path))
    check = doctor.check_results()  # the doctor called this pack intact
    assert check.status == "FAIL" and "ckpt_tiny_pre.safetensors" in check.detail and "git checkout" in check.fix
    with pytest.raises(ValueError, match=r"ckpt_tiny_pre\.safetensors .* damaged .*git checkout -- data/results/ckpt_tiny_pre"):
        results.load_checkpoint("ckpt_tiny_pre", folder=tmp_path)


def test_a_truncated_checkpoint_names_the_file_not_a_safetensors_error(tmp_path, monkeypatch):
    ckpt = _pack_with_checkpoint(tmp_path)
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    with pytest.raises(Exception) as raw:  # the fault: a raw safetensors error that names nothing
        load_checkpoint(ckpt)
    assert "ckpt_tiny_pre" not in str(raw.value)
    monkeypatch.setenv("COD_RESULTS_DIR", str(tmp_path))
    assert doctor.check_results().status == "FAIL"
    with pytest.raises(ValueError, match=r"ckpt_tiny_pre\.safetensors in the results pack is damaged"):
        results.load_checkpoint("ckpt_tiny_pre.safetensors", folder=tmp_path)


def test_the_shipped_pack_lists_every_file_and_the_hint_is_git_in_a_checkout():
    pack = results.results_dir()
    assert results.verify(pack) == {}
    assert set(results.read_manifest(pack)) == {p.name for p in pack.iterdir() if p.name != results.MANIFEST}
    if (_files.REPO_ROOT / ".git").exists():
        assert "git checkout -- data/results/scale_map.json" in results.restore_hint("scale_map.json")
    model, result = results.load_checkpoint("ckpt_d64_L24_s480_lns")
    assert model.cfg.norm == "lns" and result is not None


def test_a_truncated_manifest_names_the_fix(tmp_path, monkeypatch):
    results.save("demo", {"a": 1}, results.provenance(), folder=tmp_path)
    manifest = tmp_path / results.MANIFEST
    manifest.write_text(manifest.read_text()[:20])
    with pytest.raises(ValueError, match=r"MANIFEST\.json is damaged .*git checkout -- data/results/MANIFEST\.json"):
        results.load("demo", folder=tmp_path)
    monkeypatch.setenv("COD_RESULTS_DIR", str(tmp_path))
    check = doctor.check_results()
    assert check.status == "FAIL" and "MANIFEST.json" in check.detail


# ------------------------------------------------------------------ 5. memory guard on batch sizes

@pytest.fixture(scope="module")
def corpus():
    return learnable_corpus()


def test_a_batch_that_cannot_fit_is_refused_before_allocating(corpus):
    t0 = time.perf_counter()
    with pytest.raises(MemoryError, match=r"batch_size=1000000 .* Use TrainConfig\(batch_size <= \d+\)"):
        train(MC, tc(batch_size=10**6), corpus, progress=False)
    with pytest.raises(MemoryError, match=r"eval_batch_size <= \d+"):
        train(MC, tc(eval_batch_size=10**7), corpus, progress=False)
    assert time.perf_counter() - t0 < 5
    assert train(MC, tc(max_steps=2), corpus, progress=False).steps_done == 2  # a normal run is untouched


def test_memory_guard_names_a_batch_that_does_fit_on_binder():
    binder = 2 * 2**30 - 400 * 2**20  # Binder's 2 GB minus a running kernel
    nb03 = ModelConfig(n_layers=24)  # notebook 03's configuration passes with room to spare
    _memory.check_training_memory(nb03, TrainConfig(), available=binder)
    with pytest.raises(MemoryError) as exc:
        _memory.check_training_memory(nb03, TrainConfig(batch_size=10**6), available=binder)
    fit = int(re.search(r"batch_size <= (\d+)", str(exc.value)).group(1))
    assert fit >= TrainConfig().batch_size
    _memory.check_training_memory(nb03, TrainConfig(batch_size=fit), available=binder)
    with pytest.raises(MemoryError):
        _memory.check_training_memory(nb03, TrainConfig(batch_size=fit + 1), available=binder)
    assert _memory.available_bytes() is None or _memory.available_bytes() > 0


def test_the_estimate_counts_the_model_exactly():
    for cfg in (MC, ModelConfig(norm="peri"), ModelConfig(d_model=128, n_heads=4, ffn_hidden=100)):
        assert _memory._count_params(cfg) == build_model(cfg).num_params()


# ------------------------------------------------------------------ 6. Mix-LN too shallow to have a Post-LN block


def test_mix_with_no_post_ln_block_raises_with_the_fix():
    with pytest.raises(ValueError, match=r"floor\(mix_alpha \* n_layers\) = 0 .*pure Pre-LN.*norm='pre'"):
        ModelConfig(norm="mix", n_layers=3)
    msg = ""
    try:
        ModelConfig(norm="mix", n_layers=3, mix_alpha=0.25)
    except ValueError as exc:
        msg = str(exc)
    alpha = float(re.search(r"mix_alpha=([\d.]+) \(one Post-LN block\)", msg).group(1))
    depth = int(re.search(r"n_layers=(\d+)$", msg).group(1))
    assert ModelConfig(norm="mix", n_layers=3, mix_alpha=alpha).n_post_blocks == 1
    assert ModelConfig(norm="mix", n_layers=depth).n_post_blocks == 1


# ------------------------------------------------------------------ 7. two first-run conversions at once


def _fake_convert(dest: Path, progress: bool) -> Path:
    """Stands in for the 15 s conversion: slow enough to overlap, writes a valid kit cache, logs each call."""
    with open(dest.parent / "conversions.log", "a") as log:
        log.write(f"{os.getpid()}\n")
    time.sleep(1.0)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"weights")
    _files.atomic_write_json(tmp / gguf._MANIFEST, {"format": gguf._CACHE_FORMAT,
                                                    "files": {"model.safetensors": _files.sha256_file(tmp / "model.safetensors")}})
    if dest.exists():
        os.replace(dest, dest.parent / f".{dest.name}.old")
    os.replace(tmp, dest)
    return dest


def _open_notebook(dest: str, queue) -> None:
    try:
        queue.put(("ok", str(gguf.smollm2_folder(dest, progress=False))))
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        queue.put(("error", repr(exc)))


def test_two_first_runs_at_once_convert_once_and_both_load(tmp_path, monkeypatch):
    # the real smollm2_folder and its lock around a fast stand-in for the conversion
    monkeypatch.setattr(gguf, "_convert", _fake_convert, raising=False)
    monkeypatch.setattr(gguf, "convert_smollm2", _fake_convert)  # never called by smollm2_folder (it holds the lock)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    dest = tmp_path / "smollm2"
    procs = [ctx.Process(target=_open_notebook, args=(str(dest), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    answers = [queue.get(timeout=5) for _ in procs]
    assert answers == [("ok", str(dest))] * 2, answers
    assert len((tmp_path / "conversions.log").read_text().split()) == 1  # the second waited and used the first's
    assert gguf._cache_ok(dest)


# ------------------------------------------------------------------ 8. files readable by others (umask, not 0600)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        f = _files.atomic_write_json(tmp_path / "a.json", {"x": 1})
        assert _mode(f) == 0o644  # was 0600: an instructor's prepared cache was unreadable for attendees
        assert _mode(_files.atomic_save_safetensors({"w": torch.zeros(2)}, tmp_path / "b.safetensors")) == 0o644
        d = _files.make_temp_dir(tmp_path, ".tmp.")
        st = tmp_path / "w.safetensors"
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(st))  # safetensors itself writes 0600 ...
        _files.usual_mode(st)  # ... which the conversion resets
        assert (_mode(d), _mode(st)) == (0o755, 0o644)
        os.umask(0o077)  # a private umask stays private
        assert _mode(_files.atomic_write_text(tmp_path / "c.txt", "x")) == 0o600
        assert _files.umask() == 0o077
    finally:
        os.umask(old)


# ------------------------------------------------------------------ 9. corruption that keeps size, mtime and inode

_CHECK_CACHE = "import sys; from pathlib import Path; from curse_of_depth.workshop import gguf; " \
               "print(gguf._cache_ok(Path(sys.argv[1])))"


def test_same_size_same_mtime_corruption_is_caught_by_the_next_process(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    w = folder / "model.safetensors"
    w.write_bytes(bytes(range(256)) * 64)
    (folder / gguf._MANIFEST).write_text(json.dumps({"format": gguf._CACHE_FORMAT, "files": {"model.safetensors":
                                                                                              _files.sha256_file(w)}}))
    old = time.time() - 60
    os.utime(w, (old, old))
    assert gguf._cache_ok(folder)
    st = w.stat()
    # an on-disk stamp as older kits wrote it, matching the file: it must not stand in for the checksum
    digest = json.loads((folder / gguf._MANIFEST).read_text())["files"]["model.safetensors"]
    (folder / ".cod_verified.json").write_text(json.dumps({"model.safetensors": [digest, st.st_size, st.st_mtime_ns,
                                                                                 st.st_ino]}))
    with open(w, "r+b") as f:  # flip bytes in place: same size, same inode ...
        f.seek(1000)
        f.write(b"\xff\xff\xff\xff")
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the old modification time
    assert (w.stat().st_size, w.stat().st_mtime_ns, w.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    fresh = subprocess.run([sys.executable, "-c", _CHECK_CACHE, str(folder)], capture_output=True, text=True, timeout=120)
    assert fresh.stdout.strip() == "False", fresh.stderr[-2000:]


# ------------------------------------------------------------------ 10. smaller gaps


@pytest.mark.parametrize("field,value,needle", [
    ("norm_eps", 0.0, "norm_eps must be a positive"), ("norm_eps", -1e-6, "norm_eps must be a positive"),
    ("rope_theta", 0.0, "rope_theta must be a positive"), ("init_std", float("nan"), "init_std must be a positive"),
    ("ffn_hidden", 0, "ffn_hidden must be >= 1, or None"), ("seq_len", 128.0, r"whole number .*seq_len=128\)"),
    ("d_model", 64.0, r"whole number .*d_model=64\)"), ("n_layers", True, "whole number"),
])
def test_bad_model_numbers_raise_clear_errors(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        ModelConfig(**{field: value})


def test_numpy_integers_are_accepted_as_ints():
    import numpy as np

    cfg = ModelConfig(d_model=np.int64(64), n_layers=np.int32(2))
    assert type(cfg.d_model) is int and cfg == ModelConfig(d_model=64, n_layers=2)
    json.dumps(cfg.to_dict())


def test_device_gpu_names_cuda():
    with pytest.raises(ValueError, match="'cuda'"):
        TrainConfig(device="gpu")
    with pytest.raises(ValueError, match="whole number"):
        TrainConfig(eval_batch_size=32.0)
    assert TrainConfig(device="cuda:1").device == "cuda:1"


def test_an_interrupted_run_says_which_step_the_loss_and_the_model_belong_to(corpus, capsys, monkeypatch):
    calls = {"n": 0}
    real = Corpus.get_batch

    def batch_then_ctrl_c(self, split, *args, **kwargs):
        calls["n"] += split == "train"
        if split == "train" and calls["n"] == 14:  # Ctrl-C during step 14: steps 1-13 are done, the last validation was at step 10
            raise KeyboardInterrupt
        return real(self, split, *args, **kwargs)

    monkeypatch.setattr(Corpus, "get_batch", batch_then_ctrl_c)
    r = train(MC, tc(max_steps=40), corpus, progress=False)
    assert r.interrupted and r.steps_done == 13 and r.val_steps[-1] == 10  # a loss from step 10, a model of step 13
    assert "model holds step 13's weights; the last validation loss" in capsys.readouterr().err
    assert r.final_val_step == 10
    assert RunResult.from_dict(json.loads(json.dumps(r.to_dict()))).final_val_step == 10
    done = train(MC, tc(max_steps=5), corpus, progress=False)
    assert done.final_val_step == done.steps_done == 5
