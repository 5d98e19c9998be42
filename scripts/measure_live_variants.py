"""Notebook 03's live run with one thing changed: the learning rate or the depth (exercise 3.1's bounds).

Trains the live configuration of notebook 03 (``workshop.live.live_configs`` of the ``d64_L24_s80`` band: width 64,
24 blocks, 80 steps, AdamW lr 3e-3, seed 0, fp32, validated every 20 steps) with one change per run, and stores the
final validation losses as the results-pack entry ``live_variants`` (``curse_of_depth.workshop.results.save``). The
checker of exercise 3.1 (``curse_of_depth.workshop.exercises.nb03``) quotes them: which learning rates leave the
plateau in 80 steps, which diverge, and what a shallower model does. On the CPU, one process:

    COD_THREADS=1 .venv/bin/python scripts/measure_live_variants.py
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
import time

from curse_of_depth.data import load_corpus
from curse_of_depth.train import train
from curse_of_depth.workshop import live, results, runtime

# (norm, field, value): the live run with that one field changed
VARIANTS = [("pre", "lr", 3e-4), ("pre", "lr", 3e-2), ("pre", "lr", 1e-1), ("pre", "n_layers", 12),
            ("lns", "n_layers", 12), ("lns", "lr", 1e-1), ("pre", "lr", 1e-3)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="live_variants")
    args = ap.parse_args(argv)
    runtime.configure_threads()
    corpus = load_corpus()
    _, record = live.load_bands("d64_L24_s80")
    base = live.live_configs(record, corpus.vocab_size, ["pre", "lns"], eval_every=20)
    runs, t_all = [], time.time()
    if args.name in results.available():  # keep what an earlier call measured; run only the missing variants
        runs = results.load(args.name)["data"]["runs"]
    done = {(r["norm"], r["field"], r["value"]) for r in runs}
    for norm, field, value in [v for v in VARIANTS if v not in done]:
        model_cfg, train_cfg = base[norm]
        if field == "n_layers":
            model_cfg = dataclasses.replace(model_cfg, n_layers=value)
        else:
            train_cfg = dataclasses.replace(train_cfg, **{field: value})
        t0 = time.time()
        res = train(model_cfg, train_cfg, corpus=corpus, progress=False)
        final = res.final_val if res.final_val is not None and math.isfinite(res.final_val) else None
        runs.append({"norm": norm, "field": field, "value": value, "final_val": final,
                     "diverged": bool(res.diverged), "val_steps": res.val_steps,
                     "val_loss": [v if math.isfinite(v) else None for v in res.val_loss],
                     "wall_s": round(time.time() - t0, 1)})
        print(runs[-1]["norm"], field, value, final, res.diverged, runs[-1]["wall_s"], flush=True)
        data = {"band": "d64_L24_s80", "base": {"model": base["pre"][0].to_dict(), "train": base["pre"][1].to_dict()},
                "runs": runs}
        prov = results.provenance(seeds=[0], wall_s=round(time.time() - t_all, 1),
                                  command="COD_THREADS=1 python scripts/measure_live_variants.py "
                                          + shlex.join(argv or sys.argv[1:]),
                                  note="CPU shared with other jobs: wall times are not comparable")
        results.save(args.name, data, prov)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
