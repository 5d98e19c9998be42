"""The measured evidence the notebooks rely on (issue 13): the SmolLM2 evaluation text, the per-token view of its
residual stream, the growth of the residual profile across training. Stored results are read from the results pack;
each test checks a statement about them that the data could have contradicted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curse_of_depth import hf
from curse_of_depth.workshop import results
from curse_of_depth.workshop.precompute import STORED_EVAL_CHUNKS, STORED_SEQ


class CharTok:
    """A stand-in tokenizer: one token per character (code point)."""

    def __call__(self, text, add_special_tokens=False, verbose=False):
        return {"input_ids": [ord(c) for c in text]}


def test_eval_text_is_the_stored_compression_text_and_tokens_come_from_its_offset():
    ev = hf.SMOLLM2_EVAL
    assert (ev.start_chunk, ev.n_chunks) == tuple(STORED_EVAL_CHUNKS) and ev.seq_len == STORED_SEQ
    stored = results.load("smollm2_compress")["data"]
    assert stored["eval_chunks"] == [ev.start_chunk, ev.n_chunks] and stored["eval_tokens"] == ev.n_tokens
    idx = hf.eval_tokens(CharTok())
    text = hf.shakespeare_text("val")
    assert idx.shape == (8, 256)
    assert "".join(map(chr, idx.flatten().tolist())) == text[ev.token_offset: ev.token_offset + ev.n_tokens]
    two = hf.eval_tokens(CharTok(), n_chunks=2)
    assert two.equal(idx[:2])  # a prefix: the first chunks of the same text
    for bad in (0, 9):
        with pytest.raises(ValueError, match="n_chunks"):
            hf.eval_tokens(CharTok(), n_chunks=bad)
    assert "chunks 32-39" in ev.describe()


def test_baseline_perplexity_is_one_number_across_the_stored_results():
    ev = results.load("smollm2_eval")
    data, prov = ev["data"], ev["provenance"]
    assert prov["command"] and prov["code_version"] and prov["hardware"]
    # the compression results were measured on the same tokens: their dense loss must agree (it would not if the
    # texts differed; per-chunk perplexities here range from 11 to 60)
    dense = results.load("smollm2_compress")["data"]["sparsity"]["dense_loss"]
    assert data["loss"] == pytest.approx(dense, abs=1e-3)
    assert data["perplexity"] == pytest.approx(math.exp(data["loss"]))
    # each chunk has 255 scored tokens, so the whole is the mean of the chunks and the last prefix is the whole
    assert np.mean(data["chunk_losses"]) == pytest.approx(data["loss"], abs=1e-4)
    assert data["prefix_perplexities"][-1] == pytest.approx(data["perplexity"], rel=1e-4)
    assert data["text"]["start_chunk"] == hf.SMOLLM2_EVAL.start_chunk
    assert max(data["chunk_perplexities"]) > 3 * min(data["chunk_perplexities"])  # why a prefix is a different number


def test_the_pooled_rms_jump_at_layer_11_is_one_token():
    d = results.load("smollm2_per_token")["data"]
    stored = d["stored_layers_text"]
    pooled, n = stored["rms_pooled"], stored["n_tokens"] - stored["n_tokens"] // STORED_SEQ  # position 0 left out
    (out,) = stored["outliers"]
    assert (out["chunk"], out["position"], out["token"]) == (6, 1, " me")
    assert out["largest_jump_into_state"] == 12 and out["top_features_at_peak"][0] == 507
    assert stored["sink_top_features_state12"][:3] == out["top_features_at_peak"][:3]  # the sink's own features
    r = out["rms_by_state"][12]
    without = math.sqrt((pooled[12] ** 2 * n - r**2) / (n - 1))
    assert pooled[12] > 1.5 * pooled[11]  # the jump ...
    assert without == pytest.approx(pooled[11], rel=0.05)  # ... is gone without that one token
    median = stored["rms_per_token"]["values"][stored["rms_per_token"]["quantiles"].index(0.5)]
    assert median[12] == pytest.approx(median[11], rel=0.05)  # the typical token never jumped
    assert d["eval_text"]["outliers"] == []  # the evaluation text has no such token: no jump there
    ev = d["eval_text"]["rms_pooled"]
    assert ev[12] == pytest.approx(ev[11], rel=0.05)
    swaps = {s["swap"]: s for s in d["swaps"]}
    opening = next(s for k, s in swaps.items() if k.startswith("' make me' as the first"))
    middle = next(s for k, s in swaps.items() if "positions 100-101" in k)
    assert min(opening["rms_state12_pos1"]) > 50 * middle["rms_state12_pos101"]  # only as the opening bigram


def _profiles(name: str) -> dict:
    from curse_of_depth import analysis

    data = results.load(name)["data"]
    out: dict = {}
    for run in data["runs"]:
        for step, snap in zip(run["steps"], run["snapshots"]):
            out.setdefault(run["norm"], {}).setdefault(step, []).append(
                analysis.depth_profile(snap["variance_per_token"][1:]))
    return out


def test_training_growth_record_is_complete_with_provenance():
    rec = results.load("training_growth")
    prov, data = rec["provenance"], rec["data"]
    assert prov["complete"] and prov["command"] and prov["code_version"] and prov["hardware"] and prov["wall_s"] > 0
    assert data["tag"] == "d64_L24_s480" and data["model"]["n_layers"] == 24
    runs = {(r["norm"], r["seed"]) for r in data["runs"]}
    assert runs == {(n, s) for n in ("pre", "lns") for s in (0, 1, 2)}
    for r in data["runs"]:
        assert r["steps"][0] == 0 and r["steps"][-1] == 480 and not r["diverged"]


def test_pre_ln_profile_flattens_over_training_at_this_scale():
    prof = _profiles("training_growth")
    for norm in ("pre", "lns"):
        init, end = prof[norm][0], prof[norm][480]
        # in every seed the depth exponent of the deep three quarters falls from init to step 480 ...
        assert all(e.exponent < i.exponent for i, e in zip(init, end))
        assert all(e.total < i.total for i, e in zip(init, end))
    # ... and Pre-LN is sub-linear at 480 steps (the paper's super-linear regime would be an exponent > 1)
    assert max(p.exponent for p in prof["pre"][480]) < 1.0
    # LNS keeps the flatter profile at every snapshot, in every seed (paired by seed)
    for step in prof["pre"]:
        assert all(lv.total < pv.total for pv, lv in zip(prof["pre"][step], prof["lns"][step]))


def test_lns_keeps_the_last_block_variance_an_order_below_pre_ln_after_training():
    data = results.load("training_growth")["data"]
    last = {(r["norm"], r["seed"]): r["snapshots"][-1]["variance_per_token"][-1] for r in data["runs"]}
    ratios = [last[("pre", s)] / last[("lns", s)] for s in (0, 1, 2)]
    assert min(ratios) > 5  # paper (130M, 10K steps): ~175 vs ~25, i.e. ~7x
