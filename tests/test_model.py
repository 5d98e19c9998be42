"""The model is the real LLaMA architecture, and each norm placement is exactly what it claims."""

import math

import pytest
import torch
import torch.nn.functional as F

from curse_of_depth.model import (
    NORMS,
    CausalLM,
    ModelConfig,
    build_model,
    from_hf_state_dict,
    hf_state_dict,
    to_hf_llama,
)

TINY = dict(vocab_size=37, d_model=32, n_layers=4, n_heads=4, seq_len=16)


def tokens(seed=0, B=3, T=16, V=37):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def same_weights(norm, **kw):
    ref = build_model(ModelConfig(**{**TINY, **kw}), seed=1)
    other = CausalLM(ModelConfig(**{**TINY, **kw, "norm": norm}))
    other.load_state_dict(ref.state_dict())
    return ref, other


def test_lns_factors_are_one_over_sqrt_l_on_both_norms_and_not_buffers():
    m = build_model(ModelConfig(**{**TINY, "norm": "lns", "n_layers": 6}))
    assert [b.scale for b in m.blocks] == [1 / math.sqrt(layer) for layer in range(1, 7)]
    assert m.blocks[0].scale == 1.0
    assert all(isinstance(b.scale, float) for b in m.blocks)
    names = set(m.state_dict())
    assert not any("scale" in n for n in names), "the LNS factor must not be a buffer or parameter"


def test_lns_with_factors_forced_to_one_is_pre_ln_exactly():
    pre, lns = same_weights("lns")
    x = tokens()
    differs = (pre(x).logits - lns(x).logits).abs().max().item()
    assert differs > 1e-4, "LNS must change the forward when its factors are 1/sqrt(l)"
    for b in lns.blocks:
        b.scale = 1.0
    assert torch.equal(pre(x).logits, lns(x).logits)


def reference_block(x, b, rope, post, peri=False):
    """Hand-written block forward with explicit RMSNorm, attention and SwiGLU."""
    def rms(h, w):
        return h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def attn(h):
        B, T, C = h.shape
        H, D = b.attn.n_heads, b.attn.head_dim
        Wq, Wk, Wv = b.attn.qkv.weight.chunk(3)
        q, k, v = ((h @ W.T).view(B, T, H, D).transpose(1, 2) for W in (Wq, Wk, Wv))
        cos, sin = rope[0][:T], rope[1][:T]

        def rot(t):
            return t * cos + torch.cat([-t[..., D // 2:], t[..., : D // 2]], -1) * sin

        q, k = rot(q), rot(k)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        return (att @ v).transpose(1, 2).reshape(B, T, C) @ b.attn.o_proj.weight.T

    def mlp(h):
        g, u = (h @ b.mlp.gate_up.weight.T).split(b.mlp.hidden, -1)
        return (F.silu(g) * u) @ b.mlp.down_proj.weight.T

    if post:
        x = rms(x + attn(x), b.ln_1.weight)
        return rms(x + mlp(x), b.ln_2.weight)
    if peri:
        x = x + rms(attn(rms(x, b.ln_1.weight)), b.ln_1_out.weight)
        return x + rms(mlp(rms(x, b.ln_2.weight)), b.ln_2_out.weight)
    x = x + attn(rms(x, b.ln_1.weight))
    return x + mlp(rms(x, b.ln_2.weight))


@pytest.mark.parametrize("norm,alpha,expected", [("post", 0.25, [True, True]), ("mix", 0.5, [True, False]),
                                                 ("pre", 0.25, [False, False])])
def test_post_and_mix_match_hand_written_reference(norm, alpha, expected):
    torch.manual_seed(0)
    m = build_model(ModelConfig(**{**TINY, "n_layers": 2, "norm": norm, "mix_alpha": alpha}), seed=3)
    with torch.no_grad():  # non-trivial gains so a misplaced norm cannot hide
        for p in m.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    assert [b.post for b in m.blocks] == expected
    x = tokens(T=12)
    with torch.no_grad():
        h = m.tok_emb(x)
        for b, post in zip(m.blocks, expected):
            h = reference_block(h, b, m.rope, post)
        ref = m.lm_head(F.rms_norm(h, (h.shape[-1],), m.norm.weight, 1e-6))
        torch.testing.assert_close(m(x).logits, ref, atol=1e-5, rtol=1e-5)


def test_peri_matches_hand_written_reference():
    """Peri-LN: each branch normalized on the way in and on the way out; the stream itself never."""
    m = build_model(ModelConfig(**{**TINY, "n_layers": 3, "norm": "peri"}), seed=4)
    with torch.no_grad():  # non-trivial gains on all four norms of each block, so a swapped norm cannot hide
        for p in m.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    assert all(b.peri and not b.post for b in m.blocks)
    assert sum(n.endswith("_out.weight") for n in m.state_dict()) == 2 * 3
    x = tokens(T=12)
    with torch.no_grad():
        h = m.tok_emb(x)
        for b in m.blocks:
            h = reference_block(h, b, m.rope, post=False, peri=True)
        ref = m.lm_head(F.rms_norm(h, (h.shape[-1],), m.norm.weight, 1e-6))
        torch.testing.assert_close(m(x).logits, ref, atol=1e-5, rtol=1e-5)


def test_mix_uses_floor_alpha_L_post_blocks():
    m = build_model(ModelConfig(**{**TINY, "n_layers": 10, "norm": "mix"}))
    assert [b.post for b in m.blocks] == [True] * 2 + [False] * 8


def test_pre_matches_hugging_face_llama():
    m = build_model(ModelConfig(**TINY), seed=5).eval()
    hf = to_hf_llama(m)
    x = tokens(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(m(x).logits, hf(x).logits, atol=1e-5, rtol=1e-5)
    back = from_hf_state_dict(CausalLM(ModelConfig(**TINY)), hf_state_dict(m))
    assert torch.equal(back(x).logits, m(x).logits)


def test_hidden_states_are_raw_residual_and_skip_removes_a_block():
    m = build_model(ModelConfig(**TINY), seed=0)
    x = tokens()
    out = m(x, output_hidden_states=True)
    assert len(out.hidden_states) == TINY["n_layers"] + 1
    torch.testing.assert_close(m.head(out.hidden_states[-1]), out.logits)
    # skipping block 3 = running blocks 1, 2, 4 by hand
    skipped = m(x, skip={3}).logits
    h = m.embed(x)
    for b in m.blocks:
        if b.layer != 3:
            h = b(h, m.rope)
    torch.testing.assert_close(skipped, m.head(h))


def test_scaled_init_shrinks_only_residual_outputs():
    plain = build_model(ModelConfig(**{**TINY, "n_layers": 8}), seed=0)
    scaled = build_model(ModelConfig(**{**TINY, "n_layers": 8, "scaled_init": True}), seed=0)
    for (n, p), (_, q) in zip(plain.named_parameters(), scaled.named_parameters()):
        if n.endswith(("o_proj.weight", "down_proj.weight")):
            torch.testing.assert_close(q, p / math.sqrt(16))
        else:
            assert torch.equal(p, q), n


def test_same_seed_same_weights():
    a, b = build_model(ModelConfig(**TINY), seed=7), build_model(ModelConfig(**TINY), seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kw,words", [
    (dict(norm="layer"), "choose one of"),
    (dict(norm="LNS"), "choose one of"),
    (dict(d_model=30, n_heads=4), "does not divide"),
    (dict(n_layers=0), ">= 1"),
    (dict(d_model=12, n_heads=4), "odd"),
])
def test_bad_config_raises_with_the_fix(kw, words):
    with pytest.raises(ValueError, match=words):
        ModelConfig(**{**TINY, **kw})


def test_too_long_sequence_names_the_fix():
    m = build_model(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="seq_len"):
        m(tokens(T=17))


def test_all_norms_run_and_backprop():
    for norm in NORMS:
        m = build_model(ModelConfig(**{**TINY, "norm": norm}))
        x = tokens()
        out = m(x, targets=x)
        out.loss.backward()
        assert torch.isfinite(out.loss)
        assert abs(out.loss.item() - math.log(37)) < 0.5
