"""Band comparison, paired gaps and the claim conditions of notebooks 03 and 04: each can go either way."""

import math
import re

import numpy as np
import pytest
import torch

from curse_of_depth.analysis import attention_logit_std, block_diagnostics
from curse_of_depth.model import ModelConfig, build_model
from curse_of_depth.stats import (
    Band,
    band_from_runs,
    bands_from_data,
    count_cheap_blocks,
    deep_half_share,
    divergence_statement,
    embedding_share,
    gap_statement,
    grows_more,
    lazy_half_statement,
    paired_gap,
    val_curve,
    variance_growth,
)
from curse_of_depth.workshop.live import (
    LivePlot,
    Snapshots,
    band_position,
    band_statement,
    chain,
    config_label,
    live_configs,
    lr_text,
    plot_bands,
    recipe_label,
    train_live,
    variance_after_blocks,
)

STEPS = [10, 20, 30]


def run(losses, seed, steps=STEPS):
    return {"val_steps": list(steps), "val_loss": list(losses), "seed": seed, "diverged": False}


def band(norm, finals, start=3.3):
    # curves that fall from `start` to each seed's final value
    return band_from_runs(norm, [run([start, (start + f) / 2, f], s) for s, f in enumerate(finals)])


def test_val_curve_accepts_both_layouts_and_rejects_others():
    s1, l1 = val_curve({"val_steps": [1, 2], "val_loss": [3.0, 2.0]})
    s2, l2 = val_curve({"val": [[1, 3.0], [2, 2.0]]})
    assert np.array_equal(s1, s2) and np.array_equal(l1, l2)
    with pytest.raises(ValueError, match="no validation curve"):
        val_curve({"train_loss": [1.0]})
    with pytest.raises(ValueError, match="equal-length"):
        val_curve({"val_steps": [1, 2], "val_loss": [3.0]})


def test_band_statistics_and_seed_lookup():
    b = band("pre", [2.0, 2.2, 2.4])
    assert b.n == 3 and b.seeds == [0, 1, 2]
    assert np.allclose(b.final, [2.0, 2.2, 2.4])
    assert b.lo[-1] == pytest.approx(2.0) and b.hi[-1] == pytest.approx(2.4)
    assert b.mean[-1] == pytest.approx(2.2) and b.sd[-1] == pytest.approx(0.2)
    assert np.allclose(b.seed_curve(1), [3.3, 2.75, 2.2])
    with pytest.raises(ValueError, match="seed 7"):
        b.seed_curve(7)


def test_band_refuses_mismatched_schedules_and_empty_runs():
    with pytest.raises(ValueError, match="other steps"):
        band_from_runs("pre", [run([3, 2, 1], 0), run([3, 2, 1], 1, steps=[10, 20, 40])])
    with pytest.raises(ValueError, match="at least one seed"):
        band_from_runs("pre", [])
    with pytest.raises(ValueError, match="'runs'"):
        bands_from_data({"pre": []})


def test_bands_from_data_reads_every_norm():
    data = {"runs": {"pre": [run([3, 2.5, 2], 0)], "lns": [run([3, 2.4, 1.9], 0)], "post": []}}
    bands = bands_from_data(data)
    assert sorted(bands) == ["lns", "pre"]


def test_paired_gap_sign_test_and_counts_flip_with_the_data():
    pre, lns = band("pre", [2.9, 3.0, 3.1, 2.95, 3.05]), band("lns", [2.68, 2.69, 2.70, 2.67, 2.71])
    gap = paired_gap(pre, lns)
    assert gap.mean < 0 and gap.b_better == 5 and gap.a_better == 0 and gap.winner == "lns" and gap.p < 0.05
    assert "LNS reaches a lower validation loss than Pre-LN" in gap_statement("d64 L24", gap)
    assert "5 paired seeds: 5 favour LNS, 0 favour Pre-LN; paired t-test p < 0.05" in gap_statement("d64 L24", gap)

    # swap the roles: Pre-LN ahead
    gap = paired_gap(band("pre", [1.82, 1.83, 1.84]), band("lns", [1.94, 1.95, 1.93]))
    assert gap.winner == "pre" and gap.b_better == 0
    assert "Pre-LN reaches a lower validation loss than LNS" in gap_statement("x", gap)

    # differences that disagree in sign: no verdict, though LNS is ahead on average
    gap = paired_gap(band("pre", [2.0, 2.3, 2.6]), band("lns", [1.85, 2.35, 2.5]))
    assert gap.winner is None and gap.mean < 0 and gap.b_better == 2
    assert "no clear difference between Pre-LN and LNS (3 paired seeds: 2 favour LNS, 1 favour Pre-LN" in \
        gap_statement("x", gap)


def test_pairing_finds_a_consistent_gap_that_the_arms_spread_hides():
    """Large seed-to-seed spread shared by both arms, a small but consistent difference: significant when paired.
    The old rule (|mean gap| > 2 x the larger arm sd) called this a tie."""
    from scipy.stats import ttest_rel

    pre = [2.0, 2.4, 2.8, 2.2, 2.6]  # arm sd ~0.32
    lns = [x - 0.03 + e for x, e in zip(pre, [0.004, -0.003, 0.002, -0.002, 0.001])]
    gap = paired_gap(band("pre", pre), band("lns", lns))
    assert gap.sd_a > 0.3 and abs(gap.mean) < 0.1 * gap.sd_a
    assert gap.winner == "lns" and gap.p < 1e-4
    assert gap.p == pytest.approx(ttest_rel(lns, pre).pvalue)
    # the same means with noisy, sign-flipping differences: not significant
    noisy = [x + d for x, d in zip(pre, [-0.25, 0.2, -0.3, 0.25, -0.05])]
    gap = paired_gap(band("pre", pre), band("lns", noisy))
    assert gap.mean < 0 and gap.winner is None and gap.p > 0.5


def test_sign_test_is_context_not_the_verdict_at_small_n():
    gap = paired_gap(band("pre", [2.0, 2.1, 2.2]), band("lns", [1.9, 2.0, 2.1]))
    assert gap.b_better == 3 and gap.p_sign == pytest.approx(0.25)  # 3/3 seeds: the sign test's smallest p
    assert gap.winner == "lns"  # the paired t-test sees a constant 0.1 gap (sd 0)


def test_gap_statement_has_no_float():
    gap = paired_gap(band("pre", [2.9, 3.0, 3.1]), band("lns", [2.6, 2.7, 2.65]))
    text = gap_statement("d64 L24, 80-step schedule", gap)
    assert re.search(r"\d\.\d", text.replace("p < 0.05", "")) is None, "only the test's fixed level is a float"


def test_paired_gap_needs_common_seeds():
    a = band_from_runs("pre", [run([3, 2, 1], 0)])
    b = band_from_runs("lns", [run([3, 2, 1], 5)])
    with pytest.raises(ValueError, match="share no seed"):
        paired_gap(a, b)


def test_band_position_inside_above_below():
    b = band("pre", [2.0, 2.2, 2.4])  # final seed-sd 0.2
    inside = band_position(STEPS, [3.3, 2.7, 2.1], b, seed=0, widen_sd=0)
    assert inside.inside_final and inside.side == "inside" and inside.fraction_inside == 1.0
    assert np.allclose(inside.matched, b.seed_curve(0))
    above = band_position(STEPS, [3.3, 2.7, 2.5], b, widen_sd=0)
    assert above.side == "above" and not above.inside_final
    below = band_position(STEPS, [3.3, 2.7, 1.9], b, widen_sd=0)
    assert below.side == "below"
    assert band_position(STEPS, [3.3, 2.7, 1.9], b, widen_sd=0, tolerance=0.2).side == "inside"
    # one seed-sd of widening takes in 1.9 (0.1 below the best seed) but not 1.7 (0.3 below)
    assert band_position(STEPS, [3.3, 2.7, 1.9], b).side == "inside"
    assert band_position(STEPS, [3.3, 2.7, 1.7], b).side == "below"
    assert band_statement(inside) == ("live Pre-LN run ends inside the precomputed seed band of its configuration "
                                      "(best to worst seed, widened by one seed-sd)")
    assert "above (worse than)" in band_statement(above)
    assert "below (better than)" in band_statement(below)


def test_band_position_uses_the_band_steps_and_rejects_missing_ones():
    b = band("lns", [2.0, 2.2, 2.4])
    # a live run evaluated more often still compares at the band's steps
    pos = band_position([0, 10, 15, 20, 30], [3.4, 3.3, 3.0, 2.7, 2.1], b)
    assert pos.live.tolist() == [3.3, 2.7, 2.1]
    with pytest.raises(ValueError, match="no evaluation at steps"):
        band_position([10, 20], [3.3, 2.7], b)
    with pytest.raises(ValueError, match="tolerance"):
        band_position(STEPS, [3.3, 2.7, 2.1], b, tolerance=-1)
    with pytest.raises(ValueError, match="widen_sd"):
        band_position(STEPS, [3.3, 2.7, 2.1], b, widen_sd=-1)


def test_variance_growth_and_grows_more_flip():
    linear, flat = [1.0, 2.0, 3.0, 4.0], [1.0, 1.2, 1.3, 1.4]
    assert variance_growth(linear) == pytest.approx(4.0)
    assert grows_more(linear, flat) and not grows_more(flat, linear)
    with pytest.raises(ValueError, match="at least two"):
        variance_growth([1.0])
    with pytest.raises(ValueError, match="finite"):
        variance_growth([1.0, math.nan])


def test_cheap_blocks_and_deep_half_share():
    lazy_deep = [2.0, 0.2, 0.1, 0.001, 0.0005]
    busy_deep = [2.0, 0.01, 0.02, 0.1, 0.2]
    assert count_cheap_blocks(lazy_deep) == 2 and count_cheap_blocks(busy_deep) == 0
    assert deep_half_share(lazy_deep) < 0.1 < 0.5 < deep_half_share(busy_deep)
    with pytest.raises(ValueError):
        deep_half_share([1.0, 0.0, 0.0])
    assert "smaller share of the skip-one-block loss increase in LNS than in Pre-LN" in lazy_half_statement(
        "x", skip_pre=busy_deep, skip_lns=lazy_deep)
    assert "in Pre-LN than in LNS" in lazy_half_statement("x", skip_pre=lazy_deep, skip_lns=busy_deep)


def test_attention_logits_shrink_as_one_over_l_under_lns():
    idx = torch.randint(0, 37, (2, 16), generator=torch.Generator().manual_seed(0))
    cfg = dict(vocab_size=37, d_model=32, n_layers=6, n_heads=4, seq_len=16)
    pre = attention_logit_std(build_model(ModelConfig(**cfg, norm="pre"), seed=0), idx)
    lns_model = build_model(ModelConfig(**cfg, norm="lns"), seed=0)
    lns = attention_logit_std(lns_model, idx)
    assert len(pre) == len(lns) == 6
    assert lns[0] == pytest.approx(pre[0], rel=1e-5)  # block 1: 1/sqrt(1) = 1, same weights, same input
    # every later block: the RMS-normalised input is the same up to the norm, so the logits scale exactly by 1/l
    for layer in range(2, 7):
        block = lns_model.blocks[layer - 1]
        block.scale = 1.0
        unscaled = attention_logit_std(lns_model, idx)[layer - 1]
        block.scale = 1 / math.sqrt(layer)
        assert lns[layer - 1] == pytest.approx(unscaled / layer, rel=1e-4)


def test_snapshots_record_only_requested_steps_and_restore_mode():
    model = build_model(ModelConfig(vocab_size=37, d_model=32, n_layers=2, n_heads=4, seq_len=16), seed=0)
    model.train()
    calls = []

    def measure(m):
        calls.append(m.training)
        m.eval()
        return [1.0, 2.0]

    snaps = Snapshots(measure, at_steps=[0, 5, 10])
    snaps.record(0, model)
    for step in range(1, 12):
        snaps(step, model, None)
    assert sorted(snaps.as_dict()) == [0, 5, 10] and len(calls) == 3
    assert model.training  # restored after measure() switched it to eval
    with pytest.raises(ValueError):
        Snapshots(measure, at_steps=[-1])


def test_band_dataclass_single_seed_sd_is_zero():
    b = Band("pre", np.array([1.0, 2.0]), np.array([[3.0, 2.0]]), [0])
    assert np.all(b.sd == 0)


def test_diverged_runs_are_padded_and_counted():
    runs = [run([3.3, 2.7, 2.1], 0), {**run([3.3, 9.0], 1, steps=[10, 20]), "diverged": True}]
    b = band_from_runs("post", runs)
    assert b.diverged == [False, True] and np.isnan(b.losses[1, -1])
    assert b.hi[-1] == pytest.approx(2.1)  # the band's statistics skip the missing point
    assert divergence_statement("x", b) == "x: 1 of 2 Post-LN seeds diverged"
    ok = band_from_runs("post", [run([3.3, 2.7, 2.1], 0)])
    assert divergence_statement("x", ok) == "x: no Post-LN seed diverged (1 of 1 trained to the end)"
    # a run that stops early without having diverged is a schedule mismatch, not padding
    with pytest.raises(ValueError, match="other steps"):
        band_from_runs("pre", [run([3.3, 2.7, 2.1], 0), run([3.3, 2.7], 1, steps=[10, 20])])
    # the paired gap leaves the diverged seed out
    gap = paired_gap(band_from_runs("pre", [run([3.3, 2.7, 2.0], 0), run([3.3, 2.7, 2.0], 1)]), b)
    assert gap.seeds == [0]


def test_seed_is_read_from_the_stored_train_config():
    r = {"val_steps": [10], "val_loss": [2.0], "train_config": {"seed": 3}}
    assert band_from_runs("pre", [r]).seeds == [3]


def test_config_label_and_live_configs_copy_the_band():
    record = {"data": {"model": {"vocab_size": 84, "d_model": 32, "n_layers": 4, "n_heads": 4, "seq_len": 64},
                       "train": {"max_steps": 30, "lr": 3e-3, "seq_len": 64, "batch_size": 8, "eval_every": 10,
                                 "device": "cuda", "dtype": "bf16", "seed": 4}}}
    assert config_label(record) == "width 32, 4 blocks, 30-step schedule"
    record["data"]["train"].update(betas=[0.9, 0.95], weight_decay=0.1, grad_clip=1.0)
    assert recipe_label(record) == "AdamW, lr 3e-3, β2 0.95, weight decay 0.1, clipping at 1.0"
    assert recipe_label(record, short=True) == "AdamW, lr 3e-3" and lr_text(1e-2) == "1e-2" and lr_text(0.1) == "0.1"
    record["data"]["train"]["grad_clip"] = 0.0
    assert recipe_label(record).endswith("no clipping")
    cfgs = live_configs(record, vocab_size=84, norms=["pre", "lns"])
    (mc, tc), (mc2, _) = cfgs["pre"], cfgs["lns"]
    assert mc.norm == "pre" and mc2.norm == "lns" and mc.n_layers == 4 and mc.seq_len == 64
    assert tc.max_steps == 30 and tc.eval_every == 10 and tc.seed == 0 and tc.device == "auto" and tc.dtype == "auto"
    with pytest.raises(ValueError, match="vocab_size"):
        live_configs(record, vocab_size=65, norms=["pre"])
    with pytest.raises(ValueError, match="'model' and 'train'"):
        live_configs({"data": {"runs": {}}}, vocab_size=84, norms=["pre"])


def test_embedding_share():
    assert embedding_share([1.0, 2.0, 4.0]) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        embedding_share([1.0])


def test_chain_calls_every_callback_and_stops_if_any_asks():
    seen = []
    cb = chain(lambda s, m, r: seen.append(("a", s)), None, lambda s, m, r: s >= 2)
    assert cb(1, None, None) is False and cb(2, None, None) is True
    assert seen == [("a", 1), ("a", 2)]


def tiny_corpus():
    from curse_of_depth.data import CharTokenizer, Corpus

    text = "to be or not to be that is the question " * 40
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    return Corpus("tiny", ids[:1200], ids[1200:], tok)


def test_train_live_retrains_and_leaves_the_run_for_train_or_load(tmp_path, monkeypatch):
    from curse_of_depth.train import TrainConfig
    from curse_of_depth.workshop.live import train_or_load

    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    corpus = tiny_corpus()
    mc = ModelConfig(vocab_size=corpus.vocab_size, d_model=16, n_layers=2, n_heads=2, seq_len=16, norm="lns")
    tc = TrainConfig(max_steps=4, seq_len=16, batch_size=2, eval_every=2, eval_batches=1, eval_batch_size=2)
    idx = corpus.fixed_batches("val", 1, 2, 16)[0][0]
    snaps = Snapshots(variance_after_blocks(idx), at_steps=[0, 2, 4])
    first = train_live(mc, tc, corpus, callback=snaps, progress=False)
    assert not first.from_cache and sorted(snaps.as_dict()) == [0, 2, 4]
    assert all(len(v) == 2 for v in snaps.as_dict().values())
    again = train_live(mc, tc, corpus, progress=False)
    assert not again.from_cache  # trained again, although a cached run existed
    loaded = train_or_load(mc, tc, corpus=corpus, progress=False)
    assert loaded.from_cache and loaded.val_loss == pytest.approx(again.val_loss)


def test_block_diagnostics_gives_four_per_block_lists():
    model = build_model(ModelConfig(vocab_size=37, d_model=32, n_layers=3, n_heads=4, seq_len=16), seed=0)
    x = torch.randint(0, 37, (2, 16), generator=torch.Generator().manual_seed(0))
    d = block_diagnostics(model, x, x.roll(-1, dims=1))
    assert {len(d[k]) for k in ("variance", "angular", "skip_delta", "grad_norm")} == {3}
    assert d["embedding_variance"] > 0 and d["base_loss"] > 0
    assert model.training  # restored


def test_live_band_plot_without_a_front_end_records_curves_and_draws_nothing():
    from types import SimpleNamespace

    bands = {"pre": band("pre", [2.0, 2.2]), "lns": band("lns", [1.9, 2.0])}
    board = LivePlot(bands, title="t")
    assert board.handle is None and board.fig is None  # plain Python: no notebook front end
    result = SimpleNamespace(model_config=SimpleNamespace(norm="lns"), val_steps=[0, 10], val_loss=[4.4, 3.0])
    assert board(10, None, result) is None
    assert board.curves == {"lns": ([0, 10], [4.4, 3.0])}
    board.close()


def test_live_plot_draws_each_validation_point_of_a_training_run_with_a_front_end(monkeypatch):
    import IPython.display

    from curse_of_depth.train import TrainConfig, train
    from curse_of_depth.workshop import runtime

    shown = []

    class Handle:
        def update(self, fig):
            shown.append(len(fig.axes[0].lines))

    monkeypatch.setattr(runtime, "frontend_attached", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda fig, display_id=True: Handle())
    corpus = tiny_corpus()
    cfg = ModelConfig(vocab_size=corpus.vocab_size, d_model=16, n_layers=2, n_heads=2, seq_len=16)
    tc = TrainConfig(max_steps=4, eval_every=2, batch_size=2, seq_len=16, eval_batches=1, eval_batch_size=2,
                     device="cpu")
    plot = LivePlot(title="one run")
    r = train(cfg, tc, corpus, progress=False, callback=plot)
    assert r.steps_done == 4 and len(shown) == 3 and shown[-1] == 1  # steps 0, 2, 4: one validation curve
    assert plot.curves["pre"] == (r.val_steps, r.val_loss)


def test_plot_functions_return_figures_with_the_expected_panels():
    import matplotlib

    matplotlib.use("Agg")
    from curse_of_depth.workshop import plots

    bands = {"pre": band("pre", [2.0, 2.2, 2.4]), "lns": band("lns", [1.9, 2.0, 2.1])}
    fig = plot_bands({"a": bands, "b": bands}, live={"a": {"pre": (STEPS, [3.3, 2.7, 2.1])}})
    assert len(fig.axes) == 2
    fig = plots.plot_gaps({"a": paired_gap(bands["pre"], bands["lns"])})
    assert len(fig.axes) == 1
    fig = plots.plot_profile_snapshots({"pre": {0: [1, 2, 3], 10: [2, 4, 8]}, "lns": {0: [1, 1.5, 2]}})
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"  # log-log: the slope is the exponent
    row = {"total": (5.0, 1.0, 3), "exponent": (0.7, 0.1, 3)}
    fig = plots.plot_training_growth({"pre": {0: row, 40: row}, "lns": {0: row, 40: row}})
    assert len(fig.axes) == 2
    fig = plots.plot_recipe_probe([{"norm": "pre", "recipe": "kit", "val": [[0, 4.4], [40, 3.2]]},
                                   {"norm": "lns", "recipe": "paper", "val": [[0, 4.4], [40, 3.1]]}])
    assert len(fig.axes[0].lines) == 3
    diag = {"variance": [1.0, 2.0, 3.0], "angular": [0.4, 0.1, 0.05], "skip_delta": [2.0, 0.01, -0.001],
            "grad_norm": [0.3, 0.1, 0.05]}
    fig = plots.plot_block_diagnostics({"pre": diag, "lns": diag}, title="x")
    assert len(fig.axes) == 4
    assert fig.axes[2].get_yscale() == "symlog"  # block 1 costs 100x the others: not a linear axis


def test_live_session_trains_each_norm_with_snapshots_at_every_evaluation(tmp_path, monkeypatch):
    from curse_of_depth.train import TrainConfig
    from curse_of_depth.workshop.live import LiveSession

    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    corpus = tiny_corpus()
    tc = TrainConfig(max_steps=5, seq_len=16, batch_size=2, eval_every=2, eval_batches=1, eval_batch_size=2)
    cfgs = {n: (ModelConfig(vocab_size=corpus.vocab_size, d_model=16, n_layers=3, n_heads=2, seq_len=16, norm=n), tc)
            for n in ("lns", "pre")}
    bands = {"pre": band_from_runs("pre", [run([4.0, 3.5, 3.2, 3.1], 0, steps=[0, 2, 4, 5])])}
    session = LiveSession(bands, cfgs, corpus, corpus.fixed_batches("val", 1, 2, 16)[0][0])
    session.run("lns", progress=False)
    session.run("pre", progress=False)
    assert list(session.runs) == ["lns", "pre"]
    assert sorted(session.snapshots["pre"].as_dict()) == [0, 2, 4, 5]  # every validation point, the last included
    assert session.curves()["pre"][0] == [0, 2, 4, 5]
    assert band_position(*session.curves()["pre"], bands["pre"]).steps.tolist() == [0, 2, 4, 5]
    with pytest.raises(ValueError, match="no configuration for norm 'post'"):
        session.run("post")
    with pytest.raises(ValueError, match="at least one norm"):
        LiveSession(bands, {}, corpus, None)


def test_band_position_at_live_steps_and_live_configs_eval_every():
    b = band("lns", [2.0, 2.2, 2.4])  # band steps STEPS
    every_other = [float(STEPS[0]), float(STEPS[-1])]
    pos = band_position(every_other, [3.4, 2.1], b, seed=0, at="live")
    assert pos.steps.tolist() == every_other and pos.live.tolist() == [3.4, 2.1] and pos.side == "inside"
    assert np.allclose(pos.matched, b.seed_curve(0)[[0, -1]])
    assert band_position(every_other, [3.4, 3.0], b, widen_sd=0, at="live").side == "above"
    with pytest.raises(ValueError, match="no evaluation at steps"):  # the default still wants every band step
        band_position(every_other, [3.4, 2.1], b)
    with pytest.raises(ValueError, match="band's last step"):
        band_position([float(STEPS[0]), float(STEPS[1])], [3.4, 2.7], b, at="live")
    with pytest.raises(ValueError, match="not band steps"):
        band_position([float(STEPS[0]) + 1, float(STEPS[-1])], [3.4, 2.1], b, at="live")
    with pytest.raises(ValueError, match="'band' or 'live'"):
        band_position(STEPS, [3.3, 2.7, 2.1], b, at="somewhere")
    record = {"data": {"model": {"vocab_size": 84, "d_model": 32, "n_layers": 4, "n_heads": 4, "seq_len": 64},
                       "train": {"max_steps": 80, "seq_len": 64, "batch_size": 8, "eval_every": 10}}}
    (_, tc), = live_configs(record, vocab_size=84, norms=["pre"], eval_every=20).values()
    assert tc.eval_every == 20
    for bad in (15, 0, 5):
        with pytest.raises(ValueError, match="multiple of the band's eval_every=10"):
            live_configs(record, vocab_size=84, norms=["pre"], eval_every=bad)
