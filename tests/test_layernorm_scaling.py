"""LayerNorm Scaling on Hugging Face models is exactly the paper's LNS, reversible, and survives a checkpoint."""

import math
import os
import pickle
import subprocess
import sys

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GPT2Config,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    Qwen2Config,
    Trainer,
    TrainingArguments,
)

import curse_of_depth.layernorm_scaling as lns
from curse_of_depth.model import ModelConfig, build_model, from_hf_state_dict, hf_state_dict, to_hf_llama

V, T = 37, 16
SMALL = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_attention_heads=4, max_position_embeddings=T)
CONFIGS = {
    "llama": lambda n=4: LlamaConfig(**SMALL, num_hidden_layers=n),
    "qwen2": lambda n=4: Qwen2Config(**SMALL, num_hidden_layers=n, num_key_value_heads=2),
    "mistral": lambda n=4: MistralConfig(**SMALL, num_hidden_layers=n, num_key_value_heads=2, sliding_window=8),
}


def tokens(seed=0, B=3):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def fresh(kind="llama", n=4, seed=0):
    torch.manual_seed(seed)
    m = AutoModelForCausalLM.from_config(CONFIGS[kind](n)).eval()
    with torch.no_grad():  # non-trivial gains, so a factor applied before the gain would show
        for layer in m.model.layers:
            for name in lns.NORM_NAMES:
                getattr(layer, name).weight.uniform_(0.5, 1.5)
    return m


@torch.no_grad()
def logits(m, x):
    return m(x).logits


# ------------------------------------------------------------------ equivalence with the kit's model


@pytest.mark.parametrize("n_layers", [1, 6])
def test_hf_llama_with_lns_equals_the_kits_lns_model(n_layers):
    kit = build_model(ModelConfig(vocab_size=V, d_model=32, n_layers=n_layers, n_heads=4, seq_len=T, norm="lns"),
                      seed=3).eval()
    with torch.no_grad():
        for b in kit.blocks:
            b.ln_1.weight.uniform_(0.5, 1.5)
            b.ln_2.weight.uniform_(0.5, 1.5)
    hf = to_hf_llama(kit)  # same weights, stock (Pre-LN) Llama
    x = tokens()
    gap_pre = lns.max_logit_gap(kit, hf, x)
    lns.apply_layernorm_scaling(hf)
    gap = lns.max_logit_gap(kit, hf, x)
    assert gap < 1e-5
    if n_layers > 1:  # the claim's condition fails without LNS: it can tell the two apart
        assert gap_pre > 1e-3
    back = from_hf_state_dict(build_model(kit.cfg, seed=9), hf.state_dict()).eval()  # and back into the kit
    assert lns.max_logit_gap(back, hf, x) < 1e-5


def test_training_step_in_a_plain_loop_matches_the_kit():
    """Same weights, same batch, one SGD step each: LNS on HF trains exactly like the kit's LNS model."""
    kit = build_model(ModelConfig(vocab_size=V, d_model=32, n_layers=4, n_heads=4, seq_len=T, norm="lns"), seed=5)
    hf = lns.apply_layernorm_scaling(to_hf_llama(kit).train())
    x = tokens(1)
    for m, loss_of in ((kit, lambda: kit(x[:, :-1], targets=x[:, 1:]).loss),
                       (hf, lambda: hf(x, labels=x).loss)):
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        loss_of().backward()
        opt.step()
    sd = hf_state_dict(kit)
    own = hf.state_dict()
    for k, v in sd.items():
        torch.testing.assert_close(own[k], v, atol=1e-6, rtol=1e-5, msg=k)


# ------------------------------------------------------------------ factors, placement, removal


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_factors_are_exactly_one_over_sqrt_l_after_the_gain_and_final_norm_untouched(kind):
    m = fresh(kind, n=5)
    h = torch.randn(2, T, 32, generator=torch.Generator().manual_seed(0))
    before = {(i, n): getattr(layer, n)(h).detach() for i, layer in enumerate(m.model.layers) for n in lns.NORM_NAMES}
    final_before = m.model.norm(h).detach()
    lns.apply_layernorm_scaling(m)
    assert lns.layernorm_scaling_factors(m) == [(1 / math.sqrt(layer),) * 2 for layer in range(1, 6)]
    for (i, n), ref in before.items():
        norm = getattr(m.model.layers[i], n)
        assert type(norm.lns_scale) is float
        assert torch.equal(norm(h), ref if i == 0 else ref * (1 / math.sqrt(i + 1))), (i, n)
    assert torch.equal(m.model.norm(h), final_before)
    assert not hasattr(m.model.norm, "lns_scale") and not m.model.norm._forward_hooks
    assert not any("lns" in k or "scale" in k for k in m.state_dict()), "no new parameters or buffers"


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_remove_restores_bit_identical_logits_and_classes(kind):
    m = fresh(kind)
    x = tokens()
    ref, cls, cfg_cls, keys = logits(m, x), type(m), type(m.config), list(m.state_dict())
    lns.apply_layernorm_scaling(m)
    assert type(m).__name__.startswith("LNS") and m.config.model_type == "lns_" + kind
    assert not torch.equal(logits(m, x), ref)  # the removal check below could fail
    lns.remove_layernorm_scaling(m)
    assert torch.equal(logits(m, x), ref)
    assert type(m) is cls and type(m.config) is cfg_cls and list(m.state_dict()) == keys
    assert lns.layernorm_scaling_factors(m) is None and not hasattr(m.config, "lns_factors")
    with pytest.raises(ValueError, match="no LayerNorm Scaling to remove"):
        lns.remove_layernorm_scaling(m)


def test_model_type_reads_lns_also_for_a_config_loaded_from_disk(tmp_path):
    fresh().save_pretrained(tmp_path)
    m = LlamaForCausalLM.from_pretrained(tmp_path)
    original = dict(m.config.__dict__)
    lns.apply_layernorm_scaling(m)
    assert m.config.model_type == "lns_llama"
    lns.remove_layernorm_scaling(m)
    assert m.config.model_type == "llama" and m.config.__dict__ == original


def test_other_heads_work_and_share_the_config_class():
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    m = LlamaForSequenceClassification(LlamaConfig(**SMALL, num_hidden_layers=3, num_labels=2, pad_token_id=0)).eval()
    x = tokens()
    ref = logits(m, x)
    lns.apply_layernorm_scaling(m)
    assert type(m.config) is lns.LNSLlamaConfig and not torch.equal(logits(m, x), ref)
    lns.remove_layernorm_scaling(m)
    assert type(m) is LlamaForSequenceClassification and torch.equal(logits(m, x), ref)


def test_applying_twice_is_refused_and_leaves_the_model_alone():
    m = lns.apply_layernorm_scaling(fresh())
    x = tokens()
    ref = logits(m, x)
    with pytest.raises(ValueError, match="already applied"):
        lns.apply_layernorm_scaling(m)
    assert torch.equal(logits(m, x), ref)
    assert all(len(lns._hook_ids(getattr(layer, n))) == 1 for layer in m.model.layers for n in lns.NORM_NAMES)


def test_survives_to_dtype_deepcopy_and_pickle():
    import copy

    m = lns.apply_layernorm_scaling(fresh())
    x = tokens()
    ref = logits(m, x)
    assert torch.equal(logits(copy.deepcopy(m), x), ref)
    assert torch.equal(logits(pickle.loads(pickle.dumps(m)), x), ref)
    half = copy.deepcopy(m).to(torch.float64)
    assert lns.layernorm_scaling_factors(half) == lns.layernorm_scaling_factors(m)
    torch.testing.assert_close(logits(half, x).float(), ref, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    x = tokens(2)
    grads = []
    for ckpt in (False, True):
        m = lns.apply_layernorm_scaling(fresh(seed=4)).train()
        if ckpt:
            if hasattr(m, "activation_checkpointing_enable"):  # transformers >= 5.x name
                m.activation_checkpointing_enable({"use_reentrant": False})
            else:
                m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert any(getattr(layer, "gradient_checkpointing", False) for layer in m.model.layers)
        m(x, labels=x).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-7, rtol=1e-5)


# ------------------------------------------------------------------ checkpoint round trip


def test_round_trip_through_the_kit_and_auto_keeps_lns(tmp_path):
    m = lns.apply_layernorm_scaling(fresh("qwen2"))
    x = tokens()
    ref = logits(m, x)
    m.save_pretrained(tmp_path)
    back = lns.from_pretrained(tmp_path).eval()
    assert lns.layernorm_scaling_factors(back) == lns.layernorm_scaling_factors(m)
    assert torch.equal(logits(back, x), ref)
    auto = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # the kit is imported: its classes are registered
    assert lns.has_layernorm_scaling(auto) and torch.equal(logits(auto, x), ref)


def test_round_trip_keeps_stored_factors_of_a_pruned_model(tmp_path):
    """A model pruned from 5 to 3 layers keeps each surviving layer's own factor, not its new position's."""
    kept = [1.0, 1 / math.sqrt(3), 1 / math.sqrt(5)]
    m = lns.apply_layernorm_scaling(fresh(n=3), factors=kept)
    m.save_pretrained(tmp_path)
    back = lns.from_pretrained(tmp_path)
    assert [f for f, _ in lns.layernorm_scaling_factors(back)] == kept


def test_layers_dropped_after_apply_save_their_own_factors(tmp_path):
    m = lns.apply_layernorm_scaling(fresh(n=5))
    x = tokens()
    m.model.layers = torch.nn.ModuleList([m.model.layers[i] for i in (0, 2, 4)])  # prune layers 2 and 4 (1-based)
    m.config.num_hidden_layers = 3
    for new, layer in enumerate(m.model.layers):
        layer.self_attn.layer_idx = new
    ref = logits(m, x)
    m.save_pretrained(tmp_path)
    back = lns.from_pretrained(tmp_path).eval()
    assert [f for f, _ in lns.layernorm_scaling_factors(back)] == [1.0, 1 / math.sqrt(3), 1 / math.sqrt(5)]
    assert torch.equal(logits(back, x), ref)


def test_kits_drop_layers_keeps_lns_through_a_checkpoint(tmp_path):
    from curse_of_depth import hf

    m = lns.apply_layernorm_scaling(fresh(n=5))
    pruned = hf.drop_layers(m, [1, 3])  # 0-based: layers 2 and 4 go
    assert lns.layernorm_scaling_factors(m) == [(1 / math.sqrt(layer),) * 2 for layer in range(1, 6)]  # untouched
    pruned.save_pretrained(tmp_path)
    back = lns.from_pretrained(tmp_path).eval()
    assert [f for f, _ in lns.layernorm_scaling_factors(back)] == [1.0, 1 / math.sqrt(3), 1 / math.sqrt(5)]
    assert torch.equal(logits(back, tokens()), logits(pruned.eval(), tokens()))


def test_plain_auto_model_without_the_kit_fails_loudly(tmp_path):
    lns.apply_layernorm_scaling(fresh()).save_pretrained(tmp_path)
    code = ("import sys\nfrom transformers import AutoModelForCausalLM\n"
            f"AutoModelForCausalLM.from_pretrained({str(tmp_path)!r})\n"
            "assert 'curse_of_depth' not in sys.modules\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode != 0
    assert "lns_llama" in run.stderr and "does not recognize this architecture" in run.stderr


def test_stock_class_loading_is_caught_and_repaired(tmp_path):
    m = lns.apply_layernorm_scaling(fresh())
    x = tokens()
    ref = logits(m, x)
    m.save_pretrained(tmp_path)
    stock = LlamaForCausalLM.from_pretrained(tmp_path).eval()  # what the official pruning script does
    assert not torch.equal(logits(stock, x), ref)  # silently Pre-LN ...
    with pytest.raises(ValueError, match="loaded through the stock class"):
        lns.layernorm_scaling_factors(stock)  # ... but the kit notices
    lns.apply_layernorm_scaling(stock)
    assert torch.equal(logits(stock, x), ref)


def test_from_pretrained_refuses_a_plain_checkpoint(tmp_path):
    fresh().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a LayerNorm Scaling checkpoint"):
        lns.from_pretrained(tmp_path)


# ------------------------------------------------------------------ bad input


def test_unsupported_architectures_fail_with_what_is_supported():
    from transformers import GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=V, n_positions=T))
    with pytest.raises(ValueError, match="Llama .*Mistral.*Qwen2"):
        lns.apply_layernorm_scaling(gpt2)
    gemma2 = AutoModelForCausalLM.from_config(Gemma2Config(**SMALL, num_hidden_layers=2, num_key_value_heads=2,
                                                            head_dim=8))
    with pytest.raises(ValueError, match="sandwich"):
        lns.apply_layernorm_scaling(gemma2)
    with pytest.raises(ValueError, match="build_model"):
        lns.apply_layernorm_scaling(build_model(ModelConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=4)))
    assert not hasattr(gemma2.model.layers[0].input_layernorm, "lns_scale"), "a refusal changes nothing"


@pytest.mark.parametrize("factors,words", [([1.0, 0.5], "one per layer"), ([1.0, 0.5, -1.0, 0.2], "positive"),
                                           ([1.0, float("nan"), 0.5, 0.5], "positive")])
def test_bad_factors_are_refused(factors, words):
    with pytest.raises(ValueError, match=words):
        lns.apply_layernorm_scaling(fresh(), factors=factors)


# ------------------------------------------------------------------ scaled init warning


def test_new_lns_model_is_plain_init_and_passes_the_check():
    m = lns.new_lns_model(CONFIGS["llama"](8), seed=0)
    assert lns.has_layernorm_scaling(m)
    report = lns.check_init(m, action="report")
    assert not report.depth_scaled and 0.8 < min(report.o_over_q) and max(report.o_over_q) < 1.25


def _scaled(kind):
    m = AutoModelForCausalLM.from_config(CONFIGS["llama"](8))
    L = len(m.model.layers)
    with torch.no_grad():
        for i, layer in enumerate(m.model.layers, start=1):
            s = 1 / math.sqrt(2 * L) if kind == "gpt2" else 1 / math.sqrt(2 * i)
            layer.self_attn.o_proj.weight.mul_(s)
            layer.mlp.down_proj.weight.mul_(s)
    return m


@pytest.mark.parametrize("kind,words", [("gpt2", "GPT-2/Megatron"), ("depth", "depth-scaled")])
def test_check_init_catches_scaled_init_and_names_the_fix(kind, words):
    m = _scaled(kind)
    with pytest.raises(ValueError, match=f"(?s){words}.*Do not combine.*N\\(0, config.initializer_range\\)"):
        lns.check_init(m)
    with pytest.warns(UserWarning, match="Do not combine"):
        assert lns.check_init(m, action="warn").depth_scaled


# ------------------------------------------------------------------ Hugging Face Trainer


def test_trainer_runs_a_few_steps_and_keeps_lns(tmp_path):
    torch.manual_seed(0)
    m = lns.new_lns_model(CONFIGS["llama"](3), seed=0)
    data = [{"input_ids": t, "labels": t.clone()} for t in tokens(3, B=8)]
    before = [p.detach().clone() for p in m.parameters()]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                             use_cpu=True, report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True,
                             dataloader_num_workers=0, seed=0)
    out = Trainer(model=m, args=args, train_dataset=data).train()
    assert math.isfinite(out.training_loss) and out.global_step == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert lns.layernorm_scaling_factors(m) == [(1 / math.sqrt(layer),) * 2 for layer in (1, 2, 3)]


# ------------------------------------------------------------------ notebook 05's claims can fail


def test_notebook_claim_conditions_fail_on_the_wrong_model(tmp_path):
    """The three checked claims of notebook 05, with their exact conditions, flipped by a wrong input."""
    kit = build_model(ModelConfig(vocab_size=V, d_model=32, n_layers=4, n_heads=4, seq_len=T, norm="lns"), seed=2).eval()
    x = tokens()
    plain = to_hf_llama(kit)
    # "LNS on a Hugging Face Llama gives the kit's LNS model's logits": false for the stock Llama
    assert not lns.max_logit_gap(kit, plain, x) < 1e-5
    # "removing LNS gives back the original logits bit for bit": false while LNS is still on
    ref = logits(plain, x)
    lns.apply_layernorm_scaling(plain)
    assert not (torch.equal(logits(plain, x), ref) and type(plain) is LlamaForCausalLM)
    # "the reloaded checkpoint still has LNS": false for a checkpoint saved without it, and for the stock class
    plain.save_pretrained(tmp_path / "lns")
    stock = LlamaForCausalLM.from_pretrained(tmp_path / "lns").eval()
    assert not lns.max_logit_gap(kit, stock, x) < 1e-5
    lns.remove_layernorm_scaling(plain)
    plain.save_pretrained(tmp_path / "pre")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pre").eval()
    assert lns.layernorm_scaling_factors(reloaded) is None and not lns.max_logit_gap(kit, reloaded, x) < 1e-5
