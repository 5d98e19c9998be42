"""Seed bands, paired gaps, and the checks and verdict lines of notebooks 02-04 and 07.

A *band* is one norm's validation curve over several seeds of one configuration (trained on a GPU,
stored in the results pack as ``bands_<tag>``; ``workshop.live`` places a live run in it). Notebook
03 explains the band, the paired gap between two norms and the verdict lines; notebook 07 reads the
scale map's gaps with the same ``PairedGap``. Each condition is a plain function of numbers, so a
test can flip its input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .model import NORM_LABELS

ALPHA = 0.05  # the paired t-test's level for a verdict
STATUSES = ("OK", "WARN", "FAIL")


@dataclass(frozen=True)
class Check:
    """The outcome of one checked condition: a claim's (``theory.check_*``, notebook 02; ``value``
    is the number it rests on) or a line of the environment doctor (notebook 00), whose FAILs name a
    fix."""

    name: str
    status: str  # one of STATUSES
    detail: str
    fix: str = ""
    value: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "FAIL" and self.name and not self.fix:
            raise ValueError(f"a FAIL line must name its fix ({self.name}: {self.detail})")

    @property
    def ok(self) -> bool:
        return self.status != "FAIL"

    @classmethod
    def of(cls, ok: bool, value: float, detail: str) -> Check:
        """A claim condition's outcome: OK or FAIL, the number it rests on, a readable detail."""
        return cls("", "OK" if ok else "FAIL", detail, value=float(value))


# ----------------------------------------------------------------------------- curves and bands


def val_curve(run: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, validation losses) of a stored run: ``{"val_steps": [...], "val_loss": [...]}`` (as
    ``RunResult.to_dict()`` writes it) or ``{"val": [[step, loss], ...]}``."""
    if "val_steps" in run and "val_loss" in run:
        steps, losses = run["val_steps"], run["val_loss"]
    elif "val" in run:
        pairs = run["val"]
        if isinstance(pairs, dict):
            steps, losses = pairs["steps"], pairs["loss"]
        else:
            steps, losses = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        raise ValueError(f"no validation curve in this run (keys: {sorted(run)}); expected "
                         "val_steps/val_loss or val")
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.ndim != 1 or steps.size == 0:
        raise ValueError("validation curve must be two equal-length 1-D sequences, got "
                         f"{steps.shape} and {losses.shape}")
    return steps, losses


@dataclass
class Band:
    """One norm's validation curve over seeds: ``losses[i, j]`` is seed ``seeds[i]`` at step ``j``.
    """

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
    """Stack the seeds' validation curves, evaluated at the same steps; a diverged run's shorter
    curve (a prefix of the schedule) is padded with NaN, which the statistics ignore."""
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
            raise ValueError(f"seed #{i} of {norm!r} was evaluated at other steps; bands need one "
                             "evaluation schedule")
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
    """The bands of a stored ``bands_<tag>`` result's data (``{"runs": {norm: [run, ...]}}``)."""
    if "runs" not in data:
        raise ValueError(f"not a bands result: no 'runs' key (keys: {sorted(data)})")
    return {norm: band_from_runs(norm, runs) for norm, runs in data["runs"].items() if runs}


def divergence_statement(label: str, band: Band) -> str:
    """How many seeds of a band diverged (a verdict line: counts only)."""
    name = NORM_LABELS.get(band.norm, band.norm)
    k = sum(band.diverged)
    if k == 0:
        return f"{label}: no {name} seed diverged ({band.n} of {band.n} trained to the end)"
    return f"{label}: {k} of {band.n} {name} seeds diverged"


# ----------------------------------------------------------------------------- the paired gap


@dataclass
class PairedGap:
    """``b - a`` of the final validation loss, paired by seed (runs with one seed share the init
    draw and the data order). Notebook 03.

    Verdicts read the per-seed differences, never the arms' own spreads: the seed-to-seed spread
    both arms share cancels in a difference. ``p`` is the two-sided paired t-test. An exact sign
    test cannot reach p < 0.05 below 6 seeds (its smallest p is 2 / 2^n), so ``p_sign`` is context
    only.
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
        """mean / (sd / sqrt(n)); infinite when every seed moved by the same amount."""
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
        """Exact two-sided sign test on the seeds that differ (context: needs 6 seeds for 0.05)."""
        from scipy.stats import binomtest

        k, m = self.b_better, self.b_better + self.a_better
        return float(binomtest(k, m).pvalue) if m else 1.0

    @property
    def winner(self) -> str | None:
        """``a`` or ``b`` when the paired t-test rejects "no difference" at ``alpha``, else None."""
        if self.n < 2 or not self.p < self.alpha:
            return None
        return self.b if self.mean < 0 else self.a

    def to_dict(self) -> dict:
        """JSON-ready numbers (the scale map stores these)."""
        return {"a": self.a, "b": self.b, "seeds": list(self.seeds),
                "diffs": [float(d) for d in self.diffs], "n": self.n, "mean": self.mean,
                "sd": self.sd, "a_better": self.a_better, "b_better": self.b_better,
                "t": None if not math.isfinite(self.t) else self.t, "p": self.p,
                "p_sign": self.p_sign, "mean_a": self.mean_a, "mean_b": self.mean_b,
                "sd_a": self.sd_a, "sd_b": self.sd_b, "alpha": self.alpha, "winner": self.winner}

    @classmethod
    def from_dict(cls, d: dict) -> PairedGap:
        return cls(d["a"], d["b"], list(d["seeds"]), np.asarray(d["diffs"], dtype=float),
                   d["mean_a"], d["mean_b"], d["sd_a"], d["sd_b"], d.get("alpha", ALPHA))


def paired(a: str, b: str, loss_a: dict[int, float], loss_b: dict[int, float],
           alpha: float = ALPHA) -> PairedGap:
    """``PairedGap`` of arm ``b`` against arm ``a`` from ``{seed: final loss}``; a seed where either
    is not finite (a diverged run) is left out. Notebooks 03, 04 and 07."""
    seeds = sorted(s for s in loss_a if s in loss_b and np.isfinite([loss_a[s], loss_b[s]]).all())
    if not seeds:
        raise ValueError(f"{a!r} and {b!r} share no seed with a finite loss; a paired comparison "
                         "needs common seeds")
    fa = np.array([loss_a[s] for s in seeds], dtype=float)
    fb = np.array([loss_b[s] for s in seeds], dtype=float)
    sd = (lambda x: float(x.std(ddof=1)) if x.size > 1 else 0.0)
    return PairedGap(a, b, seeds, fb - fa, float(fa.mean()), float(fb.mean()), sd(fa), sd(fb),
                     alpha)


def paired_gap(band_a: Band, band_b: Band, alpha: float = ALPHA) -> PairedGap:
    """The gap ``b - a`` at the end of training, over the seeds both bands share."""
    return paired(band_a.norm, band_b.norm, {s: band_a.seed_curve(s)[-1] for s in band_a.seeds},
                  {s: band_b.seed_curve(s)[-1] for s in band_b.seeds}, alpha)


def gap_statement(label: str, gap: PairedGap) -> str:
    """The verdict line for a paired gap: seeds, how many favour each side, the test's outcome. No
    floats appear, so the line is the same wherever it is printed."""
    a, b = NORM_LABELS.get(gap.a, gap.a), NORM_LABELS.get(gap.b, gap.b)
    counts = f"{gap.n} paired seeds: {gap.b_better} favour {b}, {gap.a_better} favour {a}"
    if gap.winner is None:
        return f"{label}: no clear difference between {a} and {b} ({counts}; {_test(gap, '>=')})"
    win, lose = (b, a) if gap.winner == gap.b else (a, b)
    return (f"{label}: {win} reaches a lower validation loss than {lose} "
            f"({counts}; {_test(gap, '<')})")


def _test(gap: PairedGap, relation: str) -> str:
    return f"paired t-test p {relation} {gap.alpha:g}"


# ----------------------------------------------------------------------- variance growth with depth


def variance_growth(variance_per_block: Sequence[float]) -> float:
    """Variance after the deepest block over that after block 1 (``variance_per_block[l-1]``: after
    block ``l``; the embedding left out)."""
    v = np.asarray(variance_per_block, dtype=float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"need the variance after at least two blocks, got shape {v.shape}")
    if not np.all(np.isfinite(v)) or v[0] <= 0:
        raise ValueError("variances must be finite and the first one positive (a diverged model "
                         "has no growth ratio)")
    return float(v[-1] / v[0])


def grows_more(variance_a: Sequence[float], variance_b: Sequence[float]) -> bool:
    """True when ``a``'s variance grows from block 1 to the last block by a larger factor than
    ``b``'s."""
    return variance_growth(variance_a) > variance_growth(variance_b)


# ----------------------------------------------------------------------------- near-identity blocks


def count_cheap_blocks(skip_delta: Sequence[float], threshold: float = 0.005) -> int:
    """How many blocks can each be skipped for less than ``threshold`` nats of validation loss."""
    return int((np.asarray(skip_delta, dtype=float) < threshold).sum())


def deep_half_share(skip_delta: Sequence[float]) -> float:
    """The deep half's share of the summed skip-one-block loss increase, block 1 left out: near 0,
    the deep blocks are near-identity; near or above 0.5, they matter as much as the shallow ones.
    """
    d = np.clip(np.asarray(skip_delta, dtype=float)[1:], 0.0, None)
    if d.size < 2 or d.sum() == 0:
        raise ValueError("need skip-one-block deltas for at least three blocks, not all zero")
    half = d.size // 2
    return float(d[half:].sum() / d.sum())


def lazy_half_statement(label: str, skip_pre: Sequence[float], skip_lns: Sequence[float]) -> str:
    """The verdict line (no floats) naming the model whose deep half carries the smaller
    ``deep_half_share``: its deep blocks are closer to the identity. Notebook 04."""
    pre, lns = deep_half_share(skip_pre), deep_half_share(skip_lns)
    lazier, other = ("LNS", "Pre-LN") if lns < pre else ("Pre-LN", "LNS")
    return (f"{label}: the deep half of the blocks carries a smaller share of the skip-one-block "
            f"loss increase in {lazier} than in {other} (block 1 aside)")


def embedding_share(variance_with_embedding: Sequence[float]) -> float:
    """``variance[0] / variance[-1]``: the embedding's share of the final stream's variance, tiny in
    a deep Pre-LN stack at init (random-block noise), larger under LNS. Notebook 03."""
    v = np.asarray(variance_with_embedding, dtype=float)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)) or v[-1] <= 0:
        raise ValueError("need finite variances of the embedding and of at least one block, the "
                         "last positive")
    return float(v[0] / v[-1])
