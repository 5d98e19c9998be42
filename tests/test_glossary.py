"""notebooks/GLOSSARY.md, the glossary the notebooks link to (issue 14): static checks of its form.

Every entry: an <a id> anchor (what notebooks link: GLOSSARY.md#residual-stream), a ### heading, 1-3 sentences,
the notebooks where the term appears (links that resolve), papers pinned to an arXiv version; entries alphabetical;
every term the issue asks for present; every in-page link pointing at an anchor that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
GLOSSARY = NB_DIR / "GLOSSARY.md"

# The anchors notebooks may rely on: the terms of issue 14 and of the workshop.
REQUIRED = [
    "residual-stream", "pre-ln", "post-ln", "mix-ln", "peri-ln", "layernorm-scaling", "lns", "rmsnorm", "layernorm",
    "jacobian", "identity-map", "angular-distance", "block-influence", "skip-one-block-cost", "perplexity", "nats",
    "cross-entropy-loss", "seed", "seed-spread", "paired-comparison", "paired-t-test", "sign-test", "learning-rate",
    "warmup", "cosine-schedule", "optimizer-recipe", "adam", "adamw", "weight-decay", "betas", "gradient-clipping",
    "plateau", "divergence", "instability", "sparsity", "magnitude-pruning", "wanda", "owl", "layer-dropping", "gguf",
    "quantization", "safetensors", "swiglu", "rope", "attention-logits", "variance", "rms", "mean-field-recursion",
    "monte-carlo", "scaled-initialization",
]


def _entries() -> list[tuple[list[str], str, str]]:
    """(anchors, heading, body) of every entry."""
    text = GLOSSARY.read_text(encoding="utf-8")
    out = []
    for block in re.split(r"\n(?=<a id=)", text)[1:]:
        anchors = re.findall(r'<a id="([^"]+)"></a>', block.split("\n", 1)[0])
        heading = re.search(r"^### (.+)$", block, re.M)
        assert anchors and heading, f"entry without anchor or heading: {block[:80]!r}"
        out.append((anchors, heading.group(1), block[heading.end():].strip()))
    return out


def test_every_required_term_has_an_anchor():
    anchors = [a for entry in _entries() for a in entry[0]]
    assert len(anchors) == len(set(anchors)), "duplicate anchors"
    missing = [a for a in REQUIRED if a not in anchors]
    assert not missing, f"GLOSSARY.md lacks entries for {missing}"
    for a in anchors:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", a), f"anchor {a!r}: lowercase words joined by hyphens"


def test_entries_are_alphabetical():
    headings = [h.lower() for _, h, _ in _entries()]
    assert headings == sorted(headings), "keep the entries in alphabetical order"


@pytest.mark.parametrize("entry", _entries(), ids=lambda e: e[0][0])
def test_entry_is_short_and_says_where_it_appears(entry):
    anchors, heading, body = entry
    prose, _, meta = body.partition("*In:*")
    assert meta, f"{heading}: end with an '*In:*' line naming the notebooks"
    sentences = re.findall(r"[.!?](?=\s|$)", re.sub(r"\b(?:e\.g|i\.e|et al|Eq|Fig|vs)\.", "", prose))
    assert 1 <= len(sentences) <= 3, f"{heading}: 1-3 sentences ({len(sentences)})"
    for target in re.findall(r"\]\(([^)#]+\.ipynb)\)", body):
        assert (NB_DIR / target).exists(), f"{heading}: link to a missing notebook {target}"
    for url in re.findall(r"https://arxiv\.org/abs/[^)\s]+", body):
        assert re.fullmatch(r"https://arxiv\.org/abs/\d{4}\.\d{4,5}v\d+", url), f"{heading}: pin the version ({url})"


def test_in_page_links_resolve():
    text = GLOSSARY.read_text(encoding="utf-8")
    anchors = {a for entry in _entries() for a in entry[0]}
    broken = sorted({t for t in re.findall(r"\]\(#([^)]+)\)", text) if t not in anchors})
    assert not broken, f"links to anchors that do not exist: {broken}"
