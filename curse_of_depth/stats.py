"""Seed bands, paired gaps and the verdict lines notebooks 03, 04 and 07 print.

Explained in notebooks 03 (train it live) and 04 (inside the trained models); the scale map (notebook 07)
reads its gaps with the same ``PairedGap``.

A *band* is one norm's validation curve over several seeds of the same
configuration, trained on a GPU with this package's trainer and stored in the
results pack (``bands_<tag>``). A live run with seed 0 shares its init and its
data order with the band's seed-0 run, so it should land inside the band; the
functions here say whether it does, how the precomputed Pre-LN / LNS gap
reads (the per-seed differences, how many seeds favour each side, a paired t-test),
and whether trained Pre-LN's residual variance grows with depth more than
LNS's. Each condition is a plain function of numbers, so a unit test can flip
its input and watch the verdict change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.05  # the paired t-test's level for a verdict
BAND_NORMS = ("pre", "lns", "post", "mix")
NORM_NAMES = {"pre": "Pre-LN", "lns": "LNS", "post": "Post-LN", "mix": "Mix-LN", "peri": "Peri-LN"}


# ----------------------------------------------------------------------------- curves and bands


def val_curve(run: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, validation losses) of a stored run (``RunResult.to_dict()``) or of any mapping with those keys.

    Accepts ``{"val_steps": [...], "val_loss": [...]}`` and ``{"val": [[step, loss], ...]}``.
    """
    if "val_steps" in run and "val_loss" in run:
        steps, losses = run["val_steps"], run["val_loss"]
    elif "val" in run:
        pairs = run["val"]
        if isinstance(pairs, dict):
            steps, losses = pairs["steps"], pairs["loss"]
        else:
            steps, losses = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        raise ValueError(f"no validation curve in this run (keys: {sorted(run)}); expected val_steps/val_loss or val")
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.ndim != 1 or steps.size == 0:
        raise ValueError(f"validation curve must be two equal-length 1-D sequences, got {steps.shape} and {losses.shape}")
    return steps, losses


@dataclass
class Band:
    """One norm's validation curve over seeds: ``losses[i, j]`` is seed ``seeds[i]`` at ``steps[j]``."""

    norm: str
    steps: np.ndarray
    losses: np.ndarray
    seeds: list[int]
    diverged: list[bool] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def mean(self) -> np.ndarray:
        return np.nanmean(self.losses, axis=0)

    @property
    def sd(self) -> np.ndarray:
        return np.nanstd(self.losses, axis=0, ddof=1) if self.n > 1 else np.zeros(self.steps.size)

    @property
    def lo(self) -> np.ndarray:
        return np.nanmin(self.losses, axis=0)

    @property
    def hi(self) -> np.ndarray:
        return np.nanmax(self.losses, axis=0)

    @property
    def final(self) -> np.ndarray:
        """Final validation loss of each seed."""
        return self.losses[:, -1]

    def seed_curve(self, seed: int) -> np.ndarray:
        if seed not in self.seeds:
            raise ValueError(f"seed {seed} is not in this band (seeds {self.seeds})")
        return self.losses[self.seeds.index(seed)]


def band_from_runs(norm: str, runs: Sequence[dict]) -> Band:
    """Stack the seeds' validation curves (they must share their evaluation steps).

    A diverged run stops early: its curve must be a prefix of the others' schedule and is padded with NaN
    (the band's statistics ignore NaN).
    """
    if not runs:
        raise ValueError(f"no runs for norm {norm!r}: a band needs at least one seed")
    curves = [val_curve(r) for r in runs]
    steps = max((c[0] for c in curves), key=len)
    rows = []
    for i, ((s, v), r) in enumerate(zip(curves, runs)):
        if s.shape == steps.shape and np.allclose(s, steps):
            rows.append(v)
        elif r.get("diverged") and s.size < steps.size and np.allclose(s, steps[:s.size]):
            rows.append(np.concatenate([v, np.full(steps.size - s.size, np.nan)]))
        else:
            raise ValueError(f"seed #{i} of {norm!r} was evaluated at other steps; bands need one evaluation schedule")
    seeds = [_seed_of(r, i) for i, r in enumerate(runs)]
    diverged = [bool(r.get("diverged", False)) for r in runs]
    return Band(norm=norm, steps=steps, losses=np.stack(rows), seeds=seeds, diverged=diverged)


def _seed_of(run: dict, default: int) -> int:
    if "seed" in run:
        return int(run["seed"])
    for key in ("train_config", "train", "config"):
        if isinstance(run.get(key), dict) and "seed" in run[key]:
            return int(run[key]["seed"])
    return default


def bands_from_data(data: dict) -> dict[str, Band]:
    """All bands of a stored ``bands_<tag>`` result's ``data`` (``{"runs": {norm: [run, ...]}}``)."""
    if "runs" not in data:
        raise ValueError(f"not a bands result: no 'runs' key (keys: {sorted(data)})")
    return {norm: band_from_runs(norm, runs) for norm, runs in data["runs"].items() if runs}


def divergence_statement(label: str, band: Band) -> str:
    """How many seeds of a band diverged (a verdict line: counts only)."""
    name = NORM_NAMES.get(band.norm, band.norm)
    k = sum(band.diverged)
    if k == 0:
        return f"{label}: no {name} seed diverged ({band.n} of {band.n} trained to the end)"
    return f"{label}: {k} of {band.n} {name} seeds diverged"


# ----------------------------------------------------------------------------- the paired gap


@dataclass
class PairedGap:
    """``b - a`` (final validation loss), paired by seed: runs with one seed share the init draw and the data order.

    Every verdict reads the per-seed differences, never the two arms' own spreads: the seed-to-seed spread that
    both arms share cancels in a difference. ``p`` is the two-sided paired t-test on the differences
    (``scipy.stats.ttest_rel``). With 3-5 seeds it is the test that can detect a consistent gap: an exact sign
    test cannot reach p < 0.05 with fewer than 6 seeds (its smallest two-sided p is 2 / 2^n: 0.25 at n = 3,
    0.0625 at n = 5), so ``p_sign`` is reported beside it, as context, not as the verdict.
    """

    a: str
    b: str
    seeds: list[int]
    diffs: np.ndarray  # b - a, one per seed (negative: b reached the lower loss)
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    alpha: float = ALPHA

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def mean(self) -> float:
        return float(self.diffs.mean())

    @property
    def sd(self) -> float:
        """Sample standard deviation of the per-seed differences."""
        return float(self.diffs.std(ddof=1)) if self.n > 1 else 0.0

    @property
    def b_better(self) -> int:
        """Seeds in which ``b`` reached the lower loss."""
        return int((self.diffs < 0).sum())

    @property
    def a_better(self) -> int:
        """Seeds in which ``a`` reached the lower loss."""
        return int((self.diffs > 0).sum())

    @property
    def t(self) -> float:
        """The paired t statistic, mean / (sd / sqrt(n)) (infinite when every seed moved by the same amount)."""
        if self.n < 2:
            return math.nan
        if self.sd == 0:
            return math.copysign(math.inf, self.mean) if self.mean else math.nan
        return self.mean / (self.sd / math.sqrt(self.n))

    @property
    def p(self) -> float:
        """Two-sided paired t-test p-value (nan with fewer than 2 seeds)."""
        if self.n < 2 or math.isnan(self.t):
            return math.nan
        if math.isinf(self.t):
            return 0.0
        from scipy.stats import t as student_t

        return float(2 * student_t.sf(abs(self.t), df=self.n - 1))

    @property
    def p_sign(self) -> float:
        """Exact two-sided sign test on the seeds that differ (context: needs >= 6 seeds to reach 0.05)."""
        from scipy.stats import binomtest

        k, m = self.b_better, self.b_better + self.a_better
        return float(binomtest(k, m).pvalue) if m else 1.0

    @property
    def winner(self) -> str | None:
        """``a`` or ``b`` when the paired t-test rejects "no difference" at ``alpha``, ``None`` otherwise."""
        if self.n < 2 or not self.p < self.alpha:
            return None
        return self.b if self.mean < 0 else self.a

    def to_dict(self) -> dict:
        """JSON-ready numbers (the map and the instructor guide store these)."""
        return {"a": self.a, "b": self.b, "seeds": list(self.seeds), "diffs": [float(d) for d in self.diffs],
                "n": self.n, "mean": self.mean, "sd": self.sd, "a_better": self.a_better, "b_better": self.b_better,
                "t": None if not math.isfinite(self.t) else self.t, "p": self.p, "p_sign": self.p_sign,
                "mean_a": self.mean_a, "mean_b": self.mean_b, "sd_a": self.sd_a, "sd_b": self.sd_b,
                "alpha": self.alpha, "winner": self.winner}


def paired(a: str, b: str, loss_a: dict[int, float], loss_b: dict[int, float], alpha: float = ALPHA) -> PairedGap:
    """``PairedGap`` of arm ``b`` against arm ``a`` from ``{seed: final loss}``; seeds where either is not finite
    (a diverged run) are left out. Notebooks 03, 04 and 07."""
    seeds = sorted(s for s in loss_a if s in loss_b and np.isfinite(loss_a[s]) and np.isfinite(loss_b[s]))
    if not seeds:
        raise ValueError(f"{a!r} and {b!r} share no seed with a finite loss; a paired comparison needs common seeds")
    fa = np.array([loss_a[s] for s in seeds], dtype=float)
    fb = np.array([loss_b[s] for s in seeds], dtype=float)
    sd = (lambda x: float(x.std(ddof=1)) if x.size > 1 else 0.0)
    return PairedGap(a, b, seeds, fb - fa, float(fa.mean()), float(fb.mean()), sd(fa), sd(fb), alpha)


def paired_gap(band_a: Band, band_b: Band, alpha: float = ALPHA) -> PairedGap:
    """The gap ``b - a`` at the end of training, over the seeds both bands share."""
    return paired(band_a.norm, band_b.norm, {s: band_a.seed_curve(s)[-1] for s in band_a.seeds},
                  {s: band_b.seed_curve(s)[-1] for s in band_b.seeds}, alpha)


def gap_statement(label: str, gap: PairedGap) -> str:
    """The verdict line for a paired gap: seeds, how many favour each side, the test and its outcome.

    Only counts and the test's decision appear, never a float, so the line is the same wherever it is printed.
    """
    a, b = NORM_NAMES.get(gap.a, gap.a), NORM_NAMES.get(gap.b, gap.b)
    counts = f"{gap.n} paired seeds: {gap.b_better} favour {b}, {gap.a_better} favour {a}"
    if gap.winner is None:
        return f"{label}: no clear difference between {a} and {b} ({counts}; paired t-test p >= {gap.alpha:g})"
    win, lose = (b, a) if gap.winner == gap.b else (a, b)
    return f"{label}: {win} reaches a lower validation loss than {lose} ({counts}; paired t-test p < {gap.alpha:g})"


# ----------------------------------------------------------------------------- where a live run sits


@dataclass
class BandPosition:
    """Where a live validation curve sits relative to a band (compared at the band's steps).

    The band's edges are its best and worst seed, widened on each side by ``margin`` (see ``band_position``).
    """

    norm: str
    steps: np.ndarray
    live: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    margin: np.ndarray
    matched: np.ndarray | None  # the band's run with the live run's seed, if stored

    @property
    def inside(self) -> np.ndarray:
        return (self.live >= self.lo - self.margin) & (self.live <= self.hi + self.margin)

    @property
    def inside_final(self) -> bool:
        return bool(self.inside[-1])

    @property
    def fraction_inside(self) -> float:
        return float(self.inside.mean())

    @property
    def side(self) -> str:
        """'inside', 'above' (worse than every seed) or 'below' (better than every seed), at the end."""
        if self.inside_final:
            return "inside"
        return "above" if self.live[-1] > self.hi[-1] else "below"


def band_position(steps: Sequence[float], losses: Sequence[float], band: Band, seed: int | None = None,
                  widen_sd: float = 1.0, tolerance: float = 0.0, at: str = "band") -> BandPosition:
    """Compare a live curve with ``band`` at every step the band was evaluated at (``at="band"``), or only at the
    live run's own evaluation steps (``at="live"``: a live run that evaluates every 20 steps against a band stored
    every 10; each live step must be a band step, and the band's last step must be among them).

    The edges are the best and worst seed, widened by ``widen_sd`` seed standard deviations plus ``tolerance``
    nats on each side. Why widen: the live run repeats one of the band's seeds on other hardware (fp32 CPU vs
    bf16 GPU), so it differs from that seed's stored run by rounding; when that seed is the band's best or worst,
    a bare min-max test would call a faithful repeat "outside". The live run must have been evaluated at the
    band's steps (same schedule and ``eval_every``). Notebook 03.
    """
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.size == 0:
        raise ValueError("live steps and losses must be non-empty sequences of equal length")
    if tolerance < 0 or widen_sd < 0:
        raise ValueError(f"tolerance and widen_sd must be >= 0, got {tolerance}, {widen_sd}")
    if at not in ("band", "live"):
        raise ValueError(f"at must be 'band' or 'live', got {at!r}")
    index = {float(s): i for i, s in enumerate(steps)}
    band_index = {float(s): j for j, s in enumerate(band.steps)}
    if at == "band":
        missing = [int(s) for s in band.steps if float(s) not in index]
        if missing:
            raise ValueError(f"the live run has no evaluation at steps {missing[:5]} of the band; train it with the "
                             "band's configuration (same steps and eval_every), or compare at='live'")
        cols = list(range(band.steps.size))
    else:
        foreign = [int(s) for s in steps if float(s) not in band_index]
        if foreign or float(band.steps[-1]) not in index:
            raise ValueError(f"with at='live' every live step must be a band step and the band's last step "
                             f"{int(band.steps[-1])} must be one (not band steps: {foreign[:5]}); evaluate the live run "
                             "every k x the band's eval_every (live_configs(..., eval_every=...))")
        cols = sorted(band_index[float(s)] for s in steps)
    live = np.array([losses[index[float(band.steps[j])]] for j in cols])
    matched = band.seed_curve(seed)[cols] if seed is not None and seed in band.seeds else None
    margin = tolerance + widen_sd * np.nan_to_num(band.sd[cols])
    return BandPosition(band.norm, band.steps[cols].copy(), live, band.lo[cols].copy(), band.hi[cols].copy(), margin,
                        matched)


def band_statement(pos: BandPosition) -> str:
    """The verdict line for a live run against its band (no numbers: identical in every run mode)."""
    name = NORM_NAMES.get(pos.norm, pos.norm)
    where = {"inside": "inside", "above": "above (worse than)", "below": "below (better than)"}[pos.side]
    return (f"live {name} run ends {where} the precomputed seed band of its configuration "
            "(best to worst seed, widened by one seed-sd)")


# ----------------------------------------------------------------------------- variance growth with depth


def variance_growth(variance_per_block: Sequence[float]) -> float:
    """Residual-stream variance after the deepest block divided by that after block 1.

    ``variance_per_block[l-1]`` is the variance after block ``l`` (leave the embedding out).
    """
    v = np.asarray(variance_per_block, dtype=float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"need the variance after at least two blocks, got shape {v.shape}")
    if not np.all(np.isfinite(v)) or v[0] <= 0:
        raise ValueError("variances must be finite and the first one positive (a diverged model has no growth ratio)")
    return float(v[-1] / v[0])


def grows_more(variance_a: Sequence[float], variance_b: Sequence[float]) -> bool:
    """True when ``a``'s variance grows from block 1 to the last block by a larger factor than ``b``'s."""
    return variance_growth(variance_a) > variance_growth(variance_b)


# ----------------------------------------------------------------------------- near-identity blocks


def count_cheap_blocks(skip_delta: Sequence[float], threshold: float = 0.005) -> int:
    """How many blocks can each be skipped for less than ``threshold`` nats of validation loss."""
    return int((np.asarray(skip_delta, dtype=float) < threshold).sum())


def deep_half_share(skip_delta: Sequence[float]) -> float:
    """The deep half's share of the summed skip-one-block loss increase, block 1 left out.

    Near 0: the deep blocks are near-identity; near or above 0.5: they matter at least as much as the shallow ones.
    """
    d = np.clip(np.asarray(skip_delta, dtype=float)[1:], 0.0, None)
    if d.size < 2 or d.sum() == 0:
        raise ValueError("need skip-one-block deltas for at least three blocks, not all zero")
    half = d.size // 2
    return float(d[half:].sum() / d.sum())


def lazy_half_statement(label: str, skip_pre: Sequence[float], skip_lns: Sequence[float]) -> str:
    """Which model's deep half is the lazier one, as measured (a verdict line: no floats). Notebook 04.

    Compares ``deep_half_share`` of the two skip-one-block profiles: the model whose deep half carries the smaller
    share of the loss increase is the one whose deep blocks are closer to the identity.
    """
    pre, lns = deep_half_share(skip_pre), deep_half_share(skip_lns)
    lazier, other = ("LNS", "Pre-LN") if lns < pre else ("Pre-LN", "LNS")
    return (f"{label}: the deep half of the blocks carries a smaller share of the skip-one-block loss increase "
            f"in {lazier} than in {other} (block 1 aside)")


def embedding_share(variance_with_embedding: Sequence[float]) -> float:
    """The embedding's variance as a fraction of the final residual stream's (``variance[0] / variance[-1]``).

    At initialization a deep Pre-LN stack's output is almost all random-block noise (a tiny share);
    LNS damps the deep blocks, so the tokens' own signal keeps a larger share. Notebook 03.
    """
    v = np.asarray(variance_with_embedding, dtype=float)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)) or v[-1] <= 0:
        raise ValueError("need finite variances of the embedding and of at least one block, the last positive")
    return float(v[0] / v[-1])
