"""Time every notebook the way budgets.REFERENCE_SECONDS is defined, and write the measurements with provenance.

workshop: ``jupyter nbconvert --to notebook --execute`` wall time, kernel start included (``--inplace`` re-commits
the outputs: use it for the final run; otherwise the executed copy goes to a temporary folder).
smoke: the notebook's time inside the nbval run ``make test`` makes (kernel start and every cell, from pytest's junit
report), next to the wall time of a one-notebook pytest process (which adds pytest's ~5 s start-up).

Run it on an otherwise idle machine, one notebook at a time (the script runs them in order, 00 to 07, so 04 loads
03's live runs from the train-or-load cache as it does in a workshop):

    .venv/bin/python scripts/time_notebooks.py --modes workshop smoke [--inplace] [--only 03 04]

Writes benchmarks/results/notebook_times.json; copy the numbers into curse_of_depth/workshop/budgets.py REFERENCE_SECONDS.
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

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
PY = Path(sys.executable)


def load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def _junit_seconds(report: Path) -> float | None:
    """Sum of the test items' times in a pytest junit report (each = setup + call + teardown)."""
    import xml.etree.ElementTree as ET

    try:
        return round(sum(float(tc.get("time", 0)) for tc in ET.parse(report).iter("testcase")), 1)
    except (OSError, ET.ParseError):
        return None


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def run(cmd: list[str], env: dict, cwd: Path) -> tuple[float, int, str, float | None]:
    """(wall seconds, return code, output tail, peak MB of the child processes' summed RSS, sampled every 0.1 s).

    The children of nbconvert / pytest are the notebook's kernel (and whatever the kernel starts), so the peak is
    the kernel's memory, the figure that must stay under Binder's ~2 GB.
    """
    try:
        import psutil
    except ImportError:  # the timing still works without it
        psutil = None
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        peak = 0
        while p.poll() is None:
            if psutil is not None:
                try:
                    kids = psutil.Process(p.pid).children(recursive=True)
                    peak = max(peak, sum(k.memory_info().rss for k in kids if k.is_running()))
                except psutil.Error:
                    pass
            time.sleep(0.1)
        wall = time.perf_counter() - t
        log.seek(0)
        tail = log.read()[-2000:]
    return wall, p.returncode, tail, (round(peak / 2**20) if psutil is not None else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["workshop", "smoke"], choices=["workshop", "smoke"])
    ap.add_argument("--only", nargs="*", help="notebook numbers, e.g. 03 04 (default: all)")
    ap.add_argument("--inplace", action="store_true", help="workshop runs overwrite the notebooks (commit outputs)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "notebook_times.json"))
    args = ap.parse_args(argv)
    books = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        books = [b for b in books if b.name[:2] in set(args.only)]
    out_path = Path(args.out)
    record = json.loads(out_path.read_text()) if out_path.exists() else {"notebooks": {}}
    failed = False
    for mode in args.modes:
        for nb in books:
            env = {**os.environ, "COD_MODE": mode, "HF_HUB_OFFLINE": "1"}
            env.pop("COD_THREADS", None)  # the kit chooses, as for an attendee
            before = load()
            if mode == "workshop":
                with tempfile.TemporaryDirectory() as tmp:
                    target = ["--inplace"] if args.inplace else ["--output-dir", tmp]
                    cmd = [str(PY), "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           "--ExecutePreprocessor.timeout=1200", *target, nb.name]
                    wall, rc, tail, rss = run(cmd, env, NB_DIR)
                in_suite = None
            else:
                env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
                with tempfile.TemporaryDirectory() as tmp:
                    report = Path(tmp) / "junit.xml"
                    cmd = [str(PY), "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval-lax", "--nbval-current-env",
                           "--nbval-cell-timeout=600", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg",
                           f"--junitxml={report}", f"notebooks/{nb.name}"]
                    wall, rc, tail, rss = run(cmd, env, ROOT)
                    in_suite = _junit_seconds(report)
            # smoke's reference is the notebook's time inside make test's single nbval run: kernel start and every
            # cell (setup + call + teardown of its test items), without pytest's own start-up (~5 s, paid once per
            # suite, most of it importing nbformat); "seconds" is the whole one-notebook pytest process.
            entry = {"seconds": round(wall, 1), "in_suite_seconds": in_suite, "kernel_peak_rss_mb": rss,
                     "returncode": rc, "load_before": before,
                     "load_after": load(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
            record["notebooks"].setdefault(nb.name[:2], {})[mode] = entry
            suite = f" (in suite {in_suite:.1f} s)" if in_suite is not None else ""
            print(f"{mode:8s} {nb.name:40s} {wall:7.1f} s{suite}  peak kernel RSS {rss} MB  rc={rc}  load {before.split()[0]} -> {entry['load_after'].split()[0]}",
                  flush=True)
            if rc:
                failed = True
                print(tail)
    import torch

    from curse_of_depth._files import atomic_write_json
    from curse_of_depth.workshop.results import provenance

    record["provenance"] = {**provenance(command="python " + " ".join([Path(__file__).relative_to(ROOT).as_posix(),
                                                                       *(argv or sys.argv[1:])])),
                            "cpu": _cpu_name(), "cpus": os.cpu_count(), "torch": torch.__version__}
    atomic_write_json(out_path, record)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
