"""Checkers for notebook 01 (the curse in a real LLM). Solutions:
notebooks/solutions/01_curse_in_a_real_llm.ipynb.

Both run the attendee's function on a small made-up hidden state shaped like SmolLM2's (batch, seq,
features), with an attention sink at position 0 of every sequence and one more massive token, so
that the classic mistakes give numbers of their own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...analysis import angular_distance_matrix, residual_rms_per_token
from . import attempt, diagnose, wrong

_BATCH, _SEQ, _D = (
    3,
    6,
    16,
)  # 3 x 5 = 15 tokens once position 0 is left out: an odd count, one median


def _hidden(seed: int = 0, sink: float = 40.0) -> torch.Tensor:
    """A (batch, seq, d) hidden state: ordinary tokens of RMS ~1-3 with a non-zero feature mean,
    a sink at position 0 of every sequence, and one massive ordinary token (sequence 1, position 1).
    """
    g = torch.Generator().manual_seed(seed)
    h = (
        torch.randn(_BATCH, _SEQ, _D, generator=g)
        * (1 + 2 * torch.rand(_BATCH, _SEQ, 1, generator=g))
        + 0.7
    )
    h[:, 0] *= sink
    h[1, 1] *= sink / 2
    return h


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two hidden states of the same tokens: ``b`` is ``a`` turned by a token-dependent amount,
    position 0 barely.
    """
    g = torch.Generator().manual_seed(seed + 1)
    a = _hidden(seed)
    b = a + torch.randn(a.shape, generator=g) * torch.linspace(0.5, 3.0, _SEQ).view(1, -1, 1)
    b[:, 0] = a[:, 0] * 1.01 + 0.01
    return a, b


def _as_number(out):
    """The attendee's answer as a float when it is one number; else unchanged (a tensor of many
    values).
    """
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return float(out)
    return out


# -------------------------------------------------------------------------------- Exercise 1.1


def _rms(h: torch.Tensor, skip_first: bool = True) -> torch.Tensor:
    return residual_rms_per_token(h.unsqueeze(0), skip_first=skip_first)[0]


def _rms_mistakes(h: torch.Tensor) -> list:
    """Exercise 1.1's classic mistakes on ``h``: (value, mistake, hint)."""
    x = h[:, 1:]
    pos0 = _rms(h, skip_first=False)
    per_token = _rms(h)
    return [
        (
            float(x.pow(2).mean().sqrt()),
            "this is the pooled RMS (one mean over all tokens and features)",
            "take each token's RMS over its features first (mean over the last dimension), "
            "then the median of those",
        ),
        (
            float(h.pow(2).mean().sqrt()),
            "this is the pooled RMS, with position 0 included",
            "per token: h.pow(2).mean(dim=-1).sqrt(), leave out h[:, 0], then the median",
        ),
        (
            float(pos0.median()),
            "position 0 is included: the attention sink counts as a token",
            "drop position 0 of every sequence first: h[:, 1:]",
        ),
        (
            float(pos0.quantile(0.5)),
            "position 0 is included: the attention sink counts as a token",
            "drop position 0 of every sequence first: h[:, 1:]",
        ),
        (
            float(per_token.mean()),
            "this is the mean token, not the median: one massive token pulls it up",
            "use .median() over the tokens; the mean is what a few outliers drive",
        ),
        (
            float(pos0.mean()),
            "the mean over all tokens, position 0 included: the sinks drive it",
            "leave out position 0 and take the median",
        ),
        (
            float(x.std(dim=-1, unbiased=False).median()),
            "this is each token's standard deviation, not its RMS",
            "RMS does not subtract the mean: sqrt(mean(h²)) over the features",
        ),
        (
            float(x.std(dim=-1).median()),
            "this is each token's standard deviation, not its RMS",
            "RMS does not subtract the mean: sqrt(mean(h²)) over the features",
        ),
        (
            float(x.pow(2).mean(dim=-1).median()),
            "this is the mean square: the root is missing",
            "take .sqrt() of each token's mean square",
        ),
        (
            float(x.norm(dim=-1).median()),
            "this is each token's L2 norm, √d times its RMS",
            "RMS = norm / sqrt(d): average the squares over the features, not sum them",
        ),
    ]


def check_median_token_rms(median_token_rms) -> object:
    """Exercise 1.1: ``median_token_rms(h)``, h of shape (batch, seq, d) -> the median over tokens
    (position 0 of every sequence left out) of each token's RMS over its d features.
    """
    ex = "1.1"
    h = _hidden()
    out, stop = attempt(ex, median_token_rms, h.clone())
    if stop:
        return stop
    if isinstance(out, torch.Tensor) and out.numel() > 1:
        shape = tuple(out.shape)
        hint = (
            "that is every token's RMS: finish with .median()"
            if out.numel() in (_BATCH * (_SEQ - 1), _BATCH * _SEQ)
            else "take the RMS over the last dimension (features), then the median over all tokens"
        )
        return _wrong_shape(ex, shape, hint)
    out = _as_number(out)
    return diagnose(
        ex,
        out,
        float(_rms(h).median()),
        _rms_mistakes(h),
        "the median token's RMS, position 0 left out, "
        "as analysis.residual_rms_quantiles computes it",
        "h[:, 1:].pow(2).mean(dim=-1).sqrt().median()",
    )


def _wrong_shape(ex: str, shape: tuple, hint: str):
    return wrong(ex, f"your function returned a tensor of shape {shape}, not one number", hint)


# -------------------------------------------------------------------------------- Exercise 1.2


def _angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """arccos of the cosine similarity of each token, shape (batch, seq), radians."""
    return torch.arccos(F.cosine_similarity(a, b, dim=-1).clamp(-1, 1))


def check_angular_distance(angular_distance) -> object:
    """Exercise 1.2: ``angular_distance(h_a, h_b)``: two hidden states of the same tokens,
    (batch, seq, d) -> the mean over tokens (position 0 left out) of arccos(cos(h_a, h_b)) / π,
    as ``analysis.angular_distance_matrix``.
    """
    ex = "1.2"
    a, b = _pair()
    out, stop = attempt(ex, angular_distance, a.clone(), b.clone())
    if stop:
        return stop
    if isinstance(out, torch.Tensor) and out.numel() > 1:
        return _wrong_shape(
            ex, tuple(out.shape), "that is one distance per token: average them with .mean()"
        )
    out = _as_number(out)
    ref = float(angular_distance_matrix(torch.stack([a, b]))[0, 1])
    ang, cos = _angles(a, b), F.cosine_similarity(a, b, dim=-1)
    mistakes = [
        (
            float(ang[:, 1:].mean()),
            "this is in radians: the kit divides by π",
            "divide by math.pi (0 = same, 1 = opposite)",
        ),
        (
            float(ang[:, 1:].mean() * 180 / math.pi),
            "this is in degrees",
            "radians / π, so that opposite vectors give 1",
        ),
        (
            float(cos[:, 1:].mean()),
            "this is the cosine similarity, not a distance (1 = same direction)",
            "distance = arccos(cosine) / π",
        ),
        (
            float(1 - cos[:, 1:].mean()),
            "this is 1 − cosine: ShortGPT's Block Influence, not the angular distance",
            "take arccos of the cosine, then divide by π",
        ),
        (
            float(ang.mean() / math.pi),
            "position 0 is included",
            "the kit leaves out the attention sink at position 0: use h[:, 1:]",
        ),
        (
            float(ang[:, -1].mean() / math.pi),
            "only the last token of each sequence (Gromov et al.'s convention)",
            "the kit averages over every token but position 0",
        ),
        (
            float(torch.arccos(cos[:, 1:].mean()) / math.pi),
            "arccos of the mean cosine: average the angles instead",
            "arccos per token first, then the mean",
        ),
        (
            float(1 - ang[:, 1:].mean() / math.pi),
            "this is 1 − distance: a similarity",
            "distance = arccos(cosine) / π, 0 for the same direction",
        ),
    ]
    return diagnose(
        ex,
        out,
        ref,
        mistakes,
        "mean over tokens (position 0 left out) of arccos(cos) / π, "
        "equal to analysis.angular_distance_matrix",
        "F.cosine_similarity(h_a[:, 1:], h_b[:, 1:], dim=-1)"
        ".clamp(-1, 1).arccos().mean() / math.pi",
    )
