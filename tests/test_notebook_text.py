"""The notebooks as a learner reads them: short cells, words they know, exercises with checkers, a start and an end.

Static checks over the committed .ipynb files (no kernel). Run one notebook with e.g.
    NB=02 .venv/bin/python -m pytest tests/test_notebook_text.py -q
"""

from __future__ import annotations

import json
import os
import re

import pytest

from curse_of_depth._files import REPO_ROOT

NB_DIR = REPO_ROOT / "notebooks"
# Every notebook; NB=02,03 narrows a run to those.
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
if os.environ.get("NB"):
    NOTEBOOKS = [p for p in NOTEBOOKS if p.stem[:2] in os.environ["NB"].split(",")]
WITH_EXERCISES = [p for p in NOTEBOOKS if p.stem[:2] != "00"]

MAX_WORDS = 200  # per markdown cell
MAX_CODE_LINES = 25  # per code cell: longer code belongs in the library, the notebook shows the one call
# The project's own language, which an attendee does not speak (run modes are "fast mode" for instructors).
INTERNAL = re.compile(r"\bnbval\b|\bsmoke\b|\bCI\b|\bGPU loans?\b|\blent\b|\.\./shared|\bshared/|measurements folder|"
                      r"\bdevice call|\bresearch brief\b|\bpaper_brief\b|\bprobe_\w+\.md", re.I)
PAPER_PINNED = re.compile(r"arxiv\.org/abs/2502\.05795v\d")


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _text_outputs(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
        elif "text/plain" in o.get("data", {}):
            t = o["data"]["text/plain"]
            out.append("".join(t) if isinstance(t, list) else t)
    return "\n".join(out)


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def nb(request):
    return request.param, _load(request.param)


def test_markdown_cells_are_short(nb):
    path, book = nb
    for i, c in enumerate(book["cells"]):
        if c["cell_type"] == "markdown":
            n = len(_src(c).split())
            assert n <= MAX_WORDS, f"{path.name} cell {i}: {n} words (split it, or cut)"


def test_code_cells_are_short(nb):
    path, book = nb
    for i, c in enumerate(book["cells"]):
        if c["cell_type"] == "code":
            n = len([ln for ln in _src(c).splitlines() if ln.strip()])
            assert n <= MAX_CODE_LINES, f"{path.name} cell {i}: {n} lines of code (move the rest into the library)"


def test_no_project_internal_language(nb):
    path, book = nb
    for i, c in enumerate(book["cells"]):
        m = INTERNAL.search(_src(c))
        assert m is None, f"{path.name} cell {i}: {m.group(0)!r} is the project's language, not the attendee's"


def test_opens_with_goals_and_ends_with_takeaways_and_references(nb):
    path, book = nb
    md = [_src(c) for c in book["cells"] if c["cell_type"] == "markdown"]
    head = "\n".join(md[:3])
    assert re.search(r"after this notebook you (can|will be able to)", head, re.I), f"{path.name}: goals at the top"
    goals = re.search(r"after this notebook[^\n]*\n((?:\s*[-*] .+\n?)+)", head, re.I)
    assert goals and len(re.findall(r"^\s*[-*] ", goals.group(1), re.M)) == 3, f"{path.name}: three goal bullets"
    assert re.search(r"\bassumes\b|\byou need\b", head, re.I), f"{path.name}: say what it assumes"
    tail = "\n".join(md[-3:])
    take = re.search(r"takeaways?[^\n]*\n((?:\s*[-*] .+\n?)+)", tail, re.I)
    assert take and 3 <= len(re.findall(r"^\s*[-*] ", take.group(1), re.M)) <= 5, f"{path.name}: 3-5 takeaways"
    assert re.search(r"go further", tail, re.I) and "](http" in tail, f"{path.name}: 'go further' with links"
    assert "GLOSSARY.md" in "\n".join(md), f"{path.name}: link the glossary"


def test_the_paper_is_cited_with_its_version(nb):
    path, book = nb
    text = "\n".join(_src(c) for c in book["cells"] if c["cell_type"] == "markdown")
    for m in re.finditer(r"arxiv\.org/abs/2502\.05795\S*", text):
        assert PAPER_PINNED.match(m.group(0)), f"{path.name}: pin the paper's arXiv version ({m.group(0)})"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_exercises_have_a_heading_a_blank_cell_a_checker_and_a_solution(path):
    book = _load(path)
    cells = book["cells"]
    ex = [i for i, c in enumerate(cells) if "exercise" in _tags(c)]
    assert len(ex) >= 2, f"{path.name}: at least two exercises (cells tagged 'exercise')"
    for i in ex:
        assert cells[i]["cell_type"] == "code"
        heading = next((_src(c) for c in reversed(cells[:i]) if c["cell_type"] == "markdown"), "")
        assert re.search(r"^#+ .*exercise", heading, re.I | re.M), f"{path.name} cell {i}: a visible Exercise heading"
        after = next((c for c in cells[i + 1:] if c["cell_type"] == "code"), None)
        assert after is not None and re.search(r"\bcheck_\w+\(", _src(after)), \
            f"{path.name} cell {i}: the next code cell calls the checker"
        assert re.search(r"not attempted yet|✓|✗", _text_outputs(after)), f"{path.name} cell {i}: checker output stored"
    text = "\n".join(_src(c) for c in cells if c["cell_type"] == "markdown")
    assert f"solutions/{path.name}" in text, f"{path.name}: link its solutions notebook"
    sol = NB_DIR / "solutions" / path.name
    assert sol.exists(), f"solutions notebook {sol} is missing"
    sol_out = "\n".join(_text_outputs(c) for c in _load(sol)["cells"] if c["cell_type"] == "code")
    verdicts = re.findall(r"^([✓✗…]) Exercise", sol_out, re.M)
    assert len(verdicts) >= len(ex) and set(verdicts) == {"✓"}, f"{sol.name}: every checker says correct"


def test_figures_have_a_takeaway(nb):
    path, book = nb
    cells = book["cells"]
    for i, c in enumerate(cells):
        if c["cell_type"] == "code" and any("image/png" in o.get("data", {}) for o in c.get("outputs", [])):
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            assert nxt is not None and nxt["cell_type"] == "markdown" and \
                re.match(r"\s*\**takeaway", _src(nxt), re.I), f"{path.name} cell {i}: a one-line takeaway after the figure"


def test_outputs_look_finished(nb):
    path, book = nb
    for i, c in enumerate(book["cells"]):
        for o in c.get("outputs", []):
            text = _text_outputs({"outputs": [o]})
            assert not re.search(r"(^|\s)0%\|", text), f"{path.name} cell {i}: a progress bar frozen at 0%"
            if o["output_type"] == "execute_result":
                assert not re.match(r"""['"]?(CLAIM HOLDS|MEASURED): """, text), f"{path.name} cell {i}: claim echoed"

