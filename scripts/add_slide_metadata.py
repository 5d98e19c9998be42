#!/usr/bin/env python3
"""Give every cell of the notebooks a slide type, so they present as slides (jupyterlab-rise).

    python scripts/add_slide_metadata.py notebooks/*.ipynb          # write
    python scripts/add_slide_metadata.py --check notebooks/*.ipynb  # exit 1 if a notebook would change

Rule (from the headings, as notebooks/INSTRUCTORS.md describes): a markdown cell whose first line is a
``#`` or ``##`` heading starts a "slide", a ``###`` heading a "subslide"; every other cell gets "-" (it
stays on the current slide) unless its author already chose a type (a "subslide" for a big figure,
"fragment", "notes", "skip", ...), which is kept. A markdown cell that would take its slide's prose past
``MAX_SLIDE_WORDS`` starts a sub-slide (down-arrow in RISE), so no slide asks the room to read more than ~120 words.
The notebook's own metadata also gets the kit's RISE settings (``metadata.rise``, ``RISE_SETTINGS``): RISE's
scroll is on, so a slide taller than the screen (1280x720 on a projector) scrolls to its end instead of being cut.
Only ``metadata.slideshow`` and ``metadata.rise`` change: sources, outputs and execution counts are left exactly
as they are, and a second run changes nothing. The file is written in nbformat's own layout (indent 1, sorted keys),
the same layout nbconvert and JupyterLab write, so the diff is the metadata lines only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

SLIDE_TYPES = ("slide", "subslide", "fragment", "-", "skip", "notes")
# jupyterlab-rise reads these from the notebook's metadata (over its own settings). Scroll, rather than splitting
# slides: the notebooks' prose changes often, a figure's height depends on the screen and on COD_PRESENT, and
# a split made for one version of a slide goes stale with the next edit; with scroll every slide can be read to
# its end at any size (tests/browser/run_browser.py checks it at 1280x720). notebooks/rise.css keeps each figure
# within one screen.
RISE_SETTINGS = {"scroll": True}
MAX_SLIDE_WORDS = 120  # words of prose per slide (issue 14); one longer cell stays whole (cells are <= 200 words)
_HEADING = re.compile(r"^(#{1,6})\s+\S")


def heading_level(cell: dict) -> int | None:
    """The level of the heading on the first non-blank line of a markdown cell, else None."""
    if cell.get("cell_type") != "markdown":
        return None
    source = cell.get("source", "")
    text = "".join(source) if isinstance(source, list) else source
    for line in text.splitlines():
        if line.strip():
            m = _HEADING.match(line.strip())
            return len(m.group(1)) if m else None
    return None


COLAB_MARK = "# Colab only: install the kit"


def slide_type_for(cell: dict) -> str:
    """The slide type the rule gives this cell (an author's own non-heading choice is kept)."""
    if cell.get("cell_type") == "code" and "".join(cell.get("source", "")).startswith(COLAB_MARK):
        return "skip"  # the Colab install cell: nothing to show in a talk
    level = heading_level(cell)
    if level is not None and level <= 2:
        return "slide"
    if level == 3:
        return "subslide"
    current = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
    # a deliberate author choice on a non-heading cell (a sub-slide for a big figure or a reading, a fragment)
    return current if current in SLIDE_TYPES else "-"


def markdown_words(cell: dict) -> int:
    """Words of a markdown cell (0 for code)."""
    if cell.get("cell_type") != "markdown":
        return 0
    source = cell.get("source", "")
    return len(("".join(source) if isinstance(source, list) else source).split())


def slide_words(nb: dict) -> list[tuple[int, int, int]]:
    """(first cell, words of prose, markdown cells) of each slide or sub-slide as presented."""
    slides: list[list[int]] = []
    for i, cell in enumerate(nb.get("cells", [])):
        kind = cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")
        if kind in ("skip", "notes"):
            continue
        if kind in ("slide", "subslide") or not slides:
            slides.append([i, 0, 0])
        n = markdown_words(cell)
        slides[-1][1] += n
        slides[-1][2] += n > 0
    return [tuple(s) for s in slides]


def apply(nb: dict) -> int:
    """Set the slide types and the RISE settings in place; returns how many cells (and the notebook's own
    metadata, counted as one) changed."""
    changed = 0
    meta = nb.setdefault("metadata", {})
    rise = meta.get("rise", {})
    if any(rise.get(k) != v for k, v in RISE_SETTINGS.items()):
        meta["rise"] = {**rise, **RISE_SETTINGS}
        changed += 1
    words = 0  # prose on the current slide so far
    for cell in nb.get("cells", []):
        want = slide_type_for(cell)
        n = markdown_words(cell)
        if want in ("slide", "subslide"):
            words = 0
        elif want == "-" and n and words and words + n > MAX_SLIDE_WORDS:
            want, words = "subslide", 0
        if want not in ("skip", "notes"):
            words += n
        meta = cell.setdefault("metadata", {})
        if meta.get("slideshow", {}).get("slide_type") != want:
            meta.setdefault("slideshow", {})["slide_type"] = want
            changed += 1
    return changed


def dumps(nb: dict) -> str:
    """nbformat's on-disk layout (nbformat.writes: indent 1, sorted keys, non-ASCII kept)."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def process(path: Path, check: bool = False) -> int:
    nb = json.loads(path.read_text(encoding="utf-8"))
    if nb.get("nbformat") != 4:
        raise ValueError(f"{path}: only nbformat 4 notebooks are supported (got {nb.get('nbformat')})")
    changed = apply(nb)
    if changed and not check:
        # atomic: a crash never leaves a half-written notebook
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(nb))
        os.replace(tmp, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook would change")
    args = parser.parse_args(argv)
    would_change = 0
    for path in args.notebooks:
        if not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
        n = process(path, check=args.check)
        would_change += n > 0
        verb = "would change" if args.check else "changed"
        print(f"{path}: {verb} {n} cell(s)" if n else f"{path}: up to date")
    return 1 if (args.check and would_change) else 0


if __name__ == "__main__":
    sys.exit(main())
