"""The single-layer removal scan on SmolLM2-135M: reusing each layer's input vs re-running the model, side by side.

``analysis.layer_removal_scan`` takes the input of layer i from one full pass and re-runs only layers i+1..L-1;
the naive scan (``naive_scan`` below) deletes layer i and calls the Hugging Face model as a user would,
``model(input_ids=..., labels=...)``, 30 times. Both run on the same tokens, fp32, one thread. Each measurement
runs in its own child process (so its peak RSS is its own), the order alternates every repeat, and each method
keeps its fastest repeat, so machine load hits both alike. The two scans' losses are compared too (they must
agree to float rounding). Wall and CPU seconds are both recorded: on a shared machine the CPU-time ratio is the
steadier one.

Token counts: notebook 01's live scan in workshop mode (budgets.SETTINGS["01"]["workshop"]: 2 x 256 tokens),
and one 128-token chunk (the size of the smoke runs).

Target: reuse >= 1.6x faster. Work in layer-equivalents (the 576 x 49,152 head costs as much as ~8 layers):
naive 31 x (30 layers + head) ~ 1,180; reuse 30 + 435 layers + 31 heads ~ 710, so ~1.65x from the reuse.

Run:  COD_THREADS=1 .venv/bin/python benchmarks/bench_layer_removal.py [--repeats 2] [--cases 2x256,1x128]
Writes benchmarks/results/layer_removal.json and the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- layer_removal table: begin -->", "<!-- layer_removal table: end -->"


def naive_scan(model, idx):
    """The scan as a user would write it: delete each layer in turn and call the model with labels."""
    import torch

    from curse_of_depth import analysis, hf

    with torch.no_grad():
        base = float(model(input_ids=idx, labels=idx, use_cache=False).loss)
        losses = []
        for i in range(hf.num_layers(model)):
            with hf.without_layers(model, [i]):
                losses.append(float(model(input_ids=idx, labels=idx, use_cache=False).loss))
    return analysis.RemovalScan(base, losses, int(idx[:, 1:].numel()), list(range(len(losses))))


def worker(method: str, chunks: int, seq: int) -> dict:
    import torch

    from curse_of_depth import analysis, hf
    from curse_of_depth.workshop.runtime import configure_threads, peak_rss_mb

    configure_threads()
    model, tok = hf.load_pretrained(dtype=torch.float32, progress=False)
    idx = hf.shakespeare_tokens(tok, chunks, seq)
    rss_loaded = peak_rss_mb()
    t, c = time.perf_counter(), time.process_time()
    if method == "reuse":
        scan = analysis.layer_removal_scan(model, idx, progress=False)
    else:
        scan = naive_scan(model, idx)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    return {"method": method, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak_rss_mb(),
            "rss_after_load_mb": rss_loaded, "losses": scan.losses, "base_loss": scan.base_loss,
            "threads": torch.get_num_threads()}


def default_cases() -> list[tuple[int, int]]:
    from curse_of_depth.workshop.budgets import for_notebook

    nb01 = for_notebook("01", "workshop")
    return [(nb01["scan_chunks"], 256), (1, 128)]  # notebook 01 scans chunks of 256 tokens (hf.SMOLLM2_EVAL)


def run_case(chunks: int, seq: int, repeats: int) -> dict:
    runs: dict[str, list[dict]] = {"reuse": [], "naive": []}
    for r in range(repeats):
        for method in (("naive", "reuse") if r % 2 else ("reuse", "naive")):
            out = subprocess.run([sys.executable, __file__, "--worker", method, "--chunks", str(chunks),
                                  "--seq", str(seq)], capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            runs[method].append(res)
            print(f"{chunks}x{seq} repeat {r}: {method:>5} {res['seconds']:.1f} s wall, {res['cpu_seconds']:.1f} s CPU, "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB, load {os.getloadavg()[0]:.2f}", flush=True)
    best = {m: min(v, key=lambda x: x["seconds"]) for m, v in runs.items()}
    cpu = {m: min(x["cpu_seconds"] for x in v) for m, v in runs.items()}
    diffs = [abs(a - b) for a, b in zip(best["reuse"]["losses"], best["naive"]["losses"])]
    diffs.append(abs(best["reuse"]["base_loss"] - best["naive"]["base_loss"]))
    ratio, ratio_cpu = best["naive"]["seconds"] / best["reuse"]["seconds"], cpu["naive"] / cpu["reuse"]
    return {
        "tokens": chunks * seq, "chunks": chunks, "seq": seq, "repeats": repeats, "threads": best["reuse"]["threads"],
        "reuse_seconds": round(best["reuse"]["seconds"], 2), "naive_seconds": round(best["naive"]["seconds"], 2),
        "speedup": round(ratio, 2), "reuse_cpu_seconds": round(cpu["reuse"], 2),
        "naive_cpu_seconds": round(cpu["naive"], 2), "speedup_cpu": round(ratio_cpu, 2),
        "target": 1.6, "meets_target_wall": ratio >= 1.6, "meets_target_cpu": ratio_cpu >= 1.6,
        "reuse_peak_rss_mb": round(max(x["peak_rss_mb"] for x in runs["reuse"])),
        "naive_peak_rss_mb": round(max(x["peak_rss_mb"] for x in runs["naive"])),
        "rss_after_load_mb": round(best["reuse"]["rss_after_load_mb"]),
        "max_abs_loss_difference": max(diffs),
        "all_seconds": {m: [round(x["seconds"], 2) for x in v] for m, v in runs.items()},
        "all_cpu_seconds": {m: [round(x["cpu_seconds"], 2) for x in v] for m, v in runs.items()},
    }


def write_table(cases: list[dict], prov: dict, load: dict) -> None:
    from curse_of_depth._files import atomic_write_text

    lines = [BEGIN, "",
             "| tokens | reuse (wall / CPU) | naive (wall / CPU) | speedup wall | speedup CPU | peak RSS reuse / naive "
             "| max loss difference |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cases:
        lines.append(f"| {c['chunks']} x {c['seq']} = {c['tokens']} | {c['reuse_seconds']:.1f} s / {c['reuse_cpu_seconds']:.1f} s "
                     f"| {c['naive_seconds']:.1f} s / {c['naive_cpu_seconds']:.1f} s | **{c['speedup']:.2f}x** "
                     f"| **{c['speedup_cpu']:.2f}x** | {c['reuse_peak_rss_mb']} / {c['naive_peak_rss_mb']} MB "
                     f"| {c['max_abs_loss_difference']:.0e} nats |")
    lines += ["", f"Measured {prov['date']} UTC, {prov['hardware']}, code {prov['code_version']}, best of "
              f"{cases[0]['repeats']} alternating repeats per method, each in its own process. Load average "
              f"(1 min) before {load['before']:.2f}, after {load['after']:.2f}.", "", END]
    readme = HERE / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} section to fill")
    text = text[: text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    atomic_write_text(readme, text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=None, help="comma-separated CHUNKSxSEQ token settings (default: notebook 01's "
                                                  "workshop scan, then one 128-token chunk)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", choices=["reuse", "naive"])
    ap.add_argument("--chunks", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--out", default=str(HERE / "results" / "layer_removal.json"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave the JSON and README alone")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.chunks, args.seq)))
        return 0

    from curse_of_depth._files import atomic_write_json
    from curse_of_depth.workshop import results

    cases_in = ([tuple(int(x) for x in c.split("x")) for c in args.cases.split(",")] if args.cases
                else default_cases())
    t0 = time.time()
    load = {"before": os.getloadavg()[0]}
    cases = [run_case(chunks, seq, args.repeats) for chunks, seq in cases_in]
    load["after"] = os.getloadavg()[0]
    prov = results.provenance(wall_s=time.time() - t0, note="machine shared with other jobs: see load average")
    payload = {"provenance": prov, "load_average_1min": load, "cases": cases,
               "all_meet_target_cpu": all(c["meets_target_cpu"] for c in cases),
               "all_meet_target_wall": all(c["meets_target_wall"] for c in cases)}
    print(json.dumps(payload, indent=1))
    if not args.no_write:
        atomic_write_json(args.out, payload)
        write_table(cases, prov, load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
