"""First-run cost of the offline model: the kit's GGUF conversion against transformers' own GGUF loading.

``curse_of_depth.workshop.gguf.convert_smollm2`` parses the GGUF header itself and dequantizes each tensor from a
memory map; the alternative is ``AutoModelForCausalLM.from_pretrained(..., gguf_file=)`` (plus the tokenizer) and
saving its tensors (transformers refuses ``save_pretrained`` on a GGUF-loaded model). Each path runs in a fresh
process (imports included, as an attendee's first run has them), ``--repeats`` times, alternating; wall time, CPU time and peak RSS are recorded, with the machine's load average.

    python benchmarks/bench_gguf_conversion.py [--repeats 2] [--out benchmarks/results/gguf_conversion.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
dest = sys.argv[2]
if sys.argv[1] == "kit":
    from curse_of_depth.workshop import gguf
    gguf.convert_smollm2(__import__("pathlib").Path(dest), progress=False)
else:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from curse_of_depth.workshop import gguf
    g = gguf.smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(g.parent, gguf_file=g.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
    # a GGUF-loaded model refuses save_pretrained ("quantized with gguf"): save its tensors as the kit does
    from safetensors.torch import save_file
    __import__("os").makedirs(dest)
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"},
              dest + "/model.safetensors", metadata={"format": "pt"})
    model.config.save_pretrained(dest)
    tok.save_pretrained(dest)
print(json.dumps({"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def run(path: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, "-c", CHILD, path, str(Path(tmp) / "model")], capture_output=True,
                             text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"path": path, "load_before": round(load, 2), **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gguf_conversion.json"))
    args = parser.parse_args()
    rows = []
    for _ in range(args.repeats):
        for path in ("kit", "transformers"):
            rows.append(run(path))
            print(json.dumps(rows[-1]), flush=True)
    summary = {p: {k: min(r[k] for r in rows if r["path"] == p) for k in ("wall_s", "cpu_s", "peak_rss_mb")}
               for p in ("kit", "transformers")}
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                                          "best": summary, "runs": rows}, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
