"""A transparent LLaMA-style decoder with the norm placement as a visible switch.

Explained in notebooks 02 (the block equations) and 03 (training it).

The whole story of the paper is in ``Block.forward``: where the norm sits and
whether its output is multiplied by 1/sqrt(l).

    pre   x = x + attn(norm(x));            x = x + mlp(norm(x))
    lns   x = x + attn(norm(x) / sqrt(l));  x = x + mlp(norm(x) / sqrt(l))
    post  x = norm(x + attn(x));            x = norm(x + mlp(x))
    mix   post for the first floor(alpha * L) blocks, pre for the rest
    peri  x = x + norm(attn(norm(x)));      x = x + norm(mlp(norm(x)))   (Peri-LN, arXiv 2502.02732)

Everything else is the LLaMA recipe: RMSNorm, rotary position embeddings
(the ``rotate_half`` convention of Hugging Face's ``LlamaForCausalLM``, so
weights map one to one, see ``to_hf_llama``), SwiGLU, causal
scaled-dot-product attention, untied embeddings, a final norm before the head.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("pre", "lns", "post", "mix", "peri")
_INT_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "seq_len", "ffn_hidden")


def _is_whole(value) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()


@dataclass
class ModelConfig:
    """Shape and norm placement of a decoder. All fields are JSON-friendly."""

    vocab_size: int = 84
    d_model: int = 64
    n_layers: int = 12
    n_heads: int = 4
    seq_len: int = 128  # the longest context the model accepts
    norm: str = "pre"  # one of NORMS
    mix_alpha: float = 0.25  # mix: the first floor(alpha * L) blocks are Post-LN
    scaled_init: bool = False  # GPT-2/Megatron: residual output projections at std/sqrt(2L)
    init_std: float = 0.02
    ffn_hidden: int | None = None  # default: 32 * ceil(8d/3 / 32), as LLaMA rounds it
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:  # numpy integers (a sweep grid) become plain ints: JSON-friendly, equal configs
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                setattr(self, name, int(value))
        self.validate()

    def validate(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if name == "ffn_hidden" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be a whole number (int), got {value!r}: write e.g. "
                                 f"ModelConfig({name}={int(value) if _is_whole(value) else 64})")
        if self.norm not in NORMS:
            raise ValueError(
                f"unknown norm {self.norm!r}: choose one of {', '.join(NORMS)} "
                "('pre' = Pre-LN, 'lns' = LayerNorm Scaling, 'post' = Post-LN, 'mix' = Mix-LN, 'peri' = Peri-LN)"
            )
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be an integer >= 1, got {self.n_layers!r}: a model needs at least one block")
        if self.d_model < 1 or self.n_heads < 1:
            raise ValueError(f"d_model and n_heads must be positive, got d_model={self.d_model}, n_heads={self.n_heads}")
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0 and (self.d_model // h) % 2 == 0]
            raise ValueError(
                f"n_heads={self.n_heads} does not divide d_model={self.d_model}: "
                f"pick n_heads from {divisors[:8]} or change d_model to a multiple of {self.n_heads}"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"head width d_model/n_heads = {self.d_model // self.n_heads} is odd; rotary embeddings rotate "
                "pairs of features, so choose n_heads so that the head width is even"
            )
        if self.seq_len < 1 or self.vocab_size < 2:
            raise ValueError(f"seq_len must be >= 1 and vocab_size >= 2, got {self.seq_len}, {self.vocab_size}")
        if self.ffn_hidden is not None and self.ffn_hidden < 1:
            raise ValueError(f"ffn_hidden must be >= 1, or None for LLaMA's default width "
                             f"({32 * math.ceil(8 * self.d_model / 3 / 32)} at d_model={self.d_model}); got {self.ffn_hidden}")
        if not 0.0 <= self.mix_alpha <= 1.0:
            raise ValueError(f"mix_alpha must lie in [0, 1], got {self.mix_alpha}")
        if self.norm == "mix" and self.n_post_blocks == 0:
            alpha = math.ceil(1000 / self.n_layers) / 1000  # the smallest 3-decimal alpha giving one Post-LN block
            deeper = next((n for n in range(self.n_layers, 10_000) if math.floor(self.mix_alpha * n) >= 1), None)
            raise ValueError(
                f"norm='mix' with n_layers={self.n_layers} and mix_alpha={self.mix_alpha} has floor(mix_alpha * n_layers)"
                " = 0 Post-LN blocks: that is a pure Pre-LN model, not Mix-LN. Use norm='pre' for it, or "
                f"mix_alpha={alpha} (one Post-LN block)" + (f", or n_layers={deeper}" if deeper else "")
            )
        positive = {"init_std": "e.g. 0.02", "norm_eps": "e.g. 1e-6; 0 divides by zero on an all-zero input",
                    "rope_theta": "e.g. 10000.0; 0 gives NaN rotation angles"}
        for name, hint in positive.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number ({hint}), got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def hidden(self) -> int:
        return self.ffn_hidden or 32 * math.ceil(8 * self.d_model / 3 / 32)

    @property
    def n_post_blocks(self) -> int:
        """How many leading blocks are Post-LN."""
        if self.norm == "post":
            return self.n_layers
        if self.norm == "mix":
            return math.floor(self.mix_alpha * self.n_layers)
        return 0

    def lns_factor(self, layer: int) -> float:
        """The constant that multiplies both norm outputs of block ``layer`` (1-based)."""
        return 1.0 / math.sqrt(layer) if self.norm == "lns" else 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**d)


def rope_cache(seq_len: int, head_dim: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq_len, head_dim), Hugging Face layout."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair of features (i, i + head_dim/2) by its position's angle (Hugging Face's rotate_half)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary position embeddings."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)  # q, k, v fused: one matmul
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope[0][:T].to(q.dtype), rope[1][:T].to(q.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, head_dim)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    """LLaMA's feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.hidden = cfg.hidden
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.hidden, bias=False)  # gate and up fused
        self.down_proj = nn.Linear(cfg.hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """One decoder block. ``layer`` is 1-based, as in the paper. Where the norms sit is the whole story."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.post = layer <= cfg.n_post_blocks  # Post-LN (and Mix-LN's first blocks)
        self.peri = cfg.norm == "peri"
        self.scale = cfg.lns_factor(layer)  # 1/sqrt(layer) for LNS, else 1: a constant, never trained or saved
        self.ln_1 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg)
        if self.peri:  # Peri-LN also normalizes what each branch adds
            self.ln_1_out = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
            self.ln_2_out = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if self.post:  # Post-LN: normalize the stream itself after each residual add
            x = self.ln_1(x + self.attn(x, rope))
            x = self.ln_2(x + self.mlp(x))
        elif self.peri:  # Peri-LN: normalize the branch's input and its output; the stream is never normalized
            x = x + self.ln_1_out(self.attn(self.ln_1(x), rope))
            x = x + self.ln_2_out(self.mlp(self.ln_2(x)))
        else:  # Pre-LN; LayerNorm Scaling when self.scale = 1/sqrt(layer)
            x = x + self.attn(self.ln_1(x) * self.scale, rope)
            x = x + self.mlp(self.ln_2(x) * self.scale)
        return x


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: list[torch.Tensor] = field(default_factory=list)  # [embeddings, after block 1, ..., after block L]


class CausalLM(nn.Module):
    """Decoder-only language model. ``forward`` = ``embed`` -> ``blocks`` -> ``head``."""

    def __init__(self, cfg: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        # Built on the meta device and given storage afterwards: every parameter is drawn by reset_parameters
        # below, so the modules' own default inits (Kaiming-uniform for every Linear) would be thrown away; skipping
        # them halves the time to build a 128-block model (notebook 02 builds several).
        with torch.device("meta"):
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(1, cfg.n_layers + 1))
            self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)  # final norm: never scaled
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.to_empty(device="cpu")
        cos, sin = rope_cache(cfg.seq_len, cfg.head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """N(0, init_std) for every matrix, gains at 1; scaled_init shrinks the residual outputs."""
        out_std = self.cfg.init_std / math.sqrt(2 * self.cfg.n_layers) if self.cfg.scaled_init else self.cfg.init_std
        for name, p in self.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0)
            else:
                std = out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else self.cfg.init_std
                p.normal_(0.0, std, generator=generator)

    @property
    def rope(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rope_cos, self.rope_sin

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.shape[-1] > self.cfg.seq_len:
            raise ValueError(
                f"sequence length {idx.shape[-1]} exceeds the model's context seq_len={self.cfg.seq_len}; "
                f"build the model with ModelConfig(seq_len={idx.shape[-1]}) or feed shorter sequences"
            )
        return self.tok_emb(idx)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(h))

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        skip: frozenset[int] | set[int] = frozenset(),
    ) -> ModelOutput:
        """Logits (and loss when ``targets`` is given).

        ``output_hidden_states`` keeps the raw residual stream after every block (no final norm);
        ``skip`` holds 1-based block numbers to leave out, for the skip-one-block analysis.
        """
        h = self.embed(idx)
        hidden = [h] if output_hidden_states else []
        for block in self.blocks:
            if block.layer not in skip:
                h = block(h, self.rope)
            if output_hidden_states:
                hidden.append(h)
        logits = self.head(h)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return ModelOutput(logits=logits, loss=loss, hidden_states=hidden)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel() + self.lm_head.weight.numel()
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 N (matmuls) + 12 L d T (attention scores), as in the PaLM appendix."""
        c = self.cfg
        return 6 * self.num_params(non_embedding=True) + 6 * c.d_model * c.vocab_size + 12 * c.n_layers * c.d_model * c.seq_len


def build_model(cfg: ModelConfig | None = None, seed: int = 0, **overrides) -> CausalLM:
    """A freshly initialized model; ``seed`` fixes the weights through an explicit generator."""
    cfg = ModelConfig(**{**(cfg.to_dict() if cfg else {}), **overrides})
    return CausalLM(cfg, generator=torch.Generator().manual_seed(seed))


def to_hf_llama(model: CausalLM):
    """The same network as a Hugging Face ``LlamaForCausalLM`` with identical weights.

    Only Pre-LN and LNS have a Hugging Face counterpart (LNS through
    ``curse_of_depth.layernorm_scaling``); Post-LN and Mix-LN raise.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.cfg
    if c.norm not in ("pre", "lns"):
        raise ValueError(f"norm={c.norm!r} has no LlamaForCausalLM counterpart; only 'pre' (and 'lns') map to Llama")
    hf_cfg = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.hidden,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_heads,
        max_position_embeddings=c.seq_len, rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu",
    )
    hf = LlamaForCausalLM(hf_cfg)
    hf.load_state_dict(hf_state_dict(model), strict=True)
    return hf.eval()


def hf_state_dict(model: CausalLM) -> dict[str, torch.Tensor]:
    """Our weights under Hugging Face Llama names (q/k/v and gate/up split apart)."""
    sd = {"model.embed_tokens.weight": model.tok_emb.weight, "model.norm.weight": model.norm.weight,
          "lm_head.weight": model.lm_head.weight}
    for i, b in enumerate(model.blocks):
        p = f"model.layers.{i}."
        q, k, v = b.attn.qkv.weight.chunk(3, dim=0)
        gate, up = b.mlp.gate_up.weight.split(b.mlp.hidden, dim=0)
        sd.update({
            p + "input_layernorm.weight": b.ln_1.weight, p + "post_attention_layernorm.weight": b.ln_2.weight,
            p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
            p + "self_attn.o_proj.weight": b.attn.o_proj.weight,
            p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up, p + "mlp.down_proj.weight": b.mlp.down_proj.weight,
        })
    return {k: v.detach().clone() for k, v in sd.items()}


def from_hf_state_dict(model: CausalLM, sd: dict[str, torch.Tensor]) -> CausalLM:
    """Load Hugging Face Llama-named weights into our model (inverse of ``hf_state_dict``)."""
    own = {"tok_emb.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
           "lm_head.weight": sd["lm_head.weight"]}
    for i in range(model.cfg.n_layers):
        p = f"model.layers.{i}."
        own.update({
            f"blocks.{i}.ln_1.weight": sd[p + "input_layernorm.weight"],
            f"blocks.{i}.ln_2.weight": sd[p + "post_attention_layernorm.weight"],
            f"blocks.{i}.attn.qkv.weight": torch.cat([sd[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]),
            f"blocks.{i}.attn.o_proj.weight": sd[p + "self_attn.o_proj.weight"],
            f"blocks.{i}.mlp.gate_up.weight": torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]]),
            f"blocks.{i}.mlp.down_proj.weight": sd[p + "mlp.down_proj.weight"],
        })
    model.load_state_dict(own, strict=True)
    return model
