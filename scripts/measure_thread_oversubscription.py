"""Why the kit uses the *free* physical cores (``curse_of_depth.workshop.runtime``): the time of one training step with 1 and
with 2 torch threads while busy neighbours (1, then 2 busy-loop processes) keep cores occupied, with OpenMP's default idle spinning and with
``GOMP_SPINCOUNT=1000`` (what importing the kit sets).

Each setting runs in its own Python process (OpenMP reads its settings when torch loads), next to one busy-loop
process; the step is the kit's model at d=64, 12 blocks, batch 16 x 128 characters, AdamW, fp32 (notebook 03's
width). Prints a table and writes ``docs/evidence/cpu_threads.json``. The result depends on the machine and on what
else runs on it: it is evidence for the mechanism, not a constant.

    .venv/bin/python scripts/measure_thread_oversubscription.py --steps 6 --busy 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STEP = r"""
import os, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from curse_of_depth.model import build_model
from curse_of_depth.data import load_corpus
c = load_corpus("shakespeare")
m = build_model(vocab_size=c.vocab_size, d_model=64, n_layers=12, n_heads=4, seq_len=128)
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(0)
times = []
for i in range(int(sys.argv[2]) + 1):
    x, y = c.get_batch("train", 16, 128, g)
    t = time.perf_counter()
    loss = m(x, y).loss
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.perf_counter() - t)
times = sorted(times[1:])
print(times[len(times) // 2])
"""

BUSY = "while True:\n    pass\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--busy", type=int, nargs="+", default=[1, 2], help="numbers of busy-loop neighbours to try")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    rows = []
    for n_busy in args.busy:
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n_busy)]
        try:
            time.sleep(1.0)
            for spin in ("default", "1000"):
                for threads in (1, 2):
                    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "COD_THREADS")}
                    if spin != "default":
                        env["GOMP_SPINCOUNT"] = spin
                    env["PYTHONPATH"] = str(root)
                    t0 = time.perf_counter()
                    out = subprocess.run([sys.executable, "-c", STEP, str(threads), str(args.steps)], env=env,
                                         capture_output=True, text=True, check=True).stdout.split()[-1]
                    rows.append({"busy_neighbours": n_busy, "GOMP_SPINCOUNT": spin, "threads": threads,
                                 "median_step_s": float(out), "process_wall_s": round(time.perf_counter() - t0, 1)})
                    print(rows[-1], flush=True)
        finally:
            for p in busy:
                p.kill()
    with open("/proc/loadavg") as f:
        load = f.read().strip()
    from curse_of_depth.workshop.results import code_version

    out = {"rows": rows, "steps": args.steps, "loadavg_after": load, "code_version": code_version(),
           "cpu": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "command": " ".join(["python", *sys.argv])}
    (root / "docs" / "evidence" / "cpu_threads.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
