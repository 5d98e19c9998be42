"""Every number in the prose agrees with what the notebooks print (issue 14).

A reader checks the prose against the screen. This test does the same: it reads the markdown of each notebook and of
notebooks/INSTRUCTORS.md, extracts every number stated there, and looks for it in what that notebook shows, at the
precision the prose writes. A number found nowhere is stale (the outputs moved on), or a constant or a quote from a
paper, which then needs an entry with its reason in tests/prose_numbers_allow.py.

`make test` checks every notebook and INSTRUCTORS.md. To check some documents only, or to read a report:
    PROSE_NUMBERS=03 .venv/bin/python -m pytest tests/test_prose_numbers.py -q     (or 01,INSTRUCTORS)
    .venv/bin/python tests/test_prose_numbers.py 03                                  (a markdown report)
Each failure names the notebook, the cell, the number, the words around it and the nearest printed values, and says
how to fix it. The unit tests of the extractor and the matcher (bottom of this file) always run.

What counts as a number (extract_numbers): digits in prose, as integers, decimals and 4,096; percentages; factors
(×5.4, 36×, x1.06, 3-fold, 24 times); ranges (8–15%, 0.07–0.12, −0.2 to −0.3, x1.06 to x1.58: each end is checked, and
a unit written after the second end applies to both); scientific (3e-3, 3×10⁻³, 10⁷); magnitudes (135M, 8 M, 164k,
2.6 billion); times (61 s, 2.7 min) and memory sizes (1.1 GB, 540 MB); fractions of two integers (5/5, 1/10).
Numbers written as words are not read.

What is not a claim: code spans and fenced code; LaTeX ($...$, $$...$$): a formula holds symbols and formula
constants (the 2 of ℓ^{2-2p}), so write a measured number in the prose, not inside math; link targets, bare URLs,
images, HTML tags and comments; generated blocks (<!-- name:begin --> ... <!-- name:end -->, rebuilt from the data by
their own tool and test); the numbers of headings (## 2 · ...) and of ordered lists; notebook numbers (zero-padded:
03, notebooks 02–04); references (Fig. 4, Table 6, Eqs. 21–23, Lemma 3.2, section 2, §1.7, footnote 1, Exercise 3.1); arXiv ids,
dates, clock times, versions (2.11.0, 5.x) and years 1990–2029; numbers glued to a name (SmolLM2-135M, GPT-2,
Qwen3, L6, Q4_1, bf16); a numerator over a symbol (1/√ℓ, 1/ℓ); and every number in a sentence that ends with "?"
(a question offers choices, it does not state a fact: "2×, 20×, 200×?").

Where a number may be found (Source). For a notebook: what its screen shows, i.e. its stored text outputs (streams,
text results, markdown and HTML tables; not figure or widget reprs) and the numeric literals of its code (the
configuration on screen; comments excluded); the results-pack files it uses (named in its code or outputs, plus
PACK_EXTRA), every numeric leaf but the training curves (train_*/val_*: prose quotes their summaries, which the
notebooks print), losses also as exp() (perplexity, perplexity ratio), and apart the distinct values of its
configuration (CONFIG_KEYS: "width 64", "10% warmup"); for its first cell (the header's "about 61 s")
its rows of benchmarks/results/notebook_times.json and notebook_memory.json (budgets.REFERENCE_SECONDS is copied from
the former). For INSTRUCTORS.md: a paragraph opening with **NN (What to say at each main figure), or text after a
line <!-- numbers: NN -->, is checked against notebook NN and its benchmark rows; everything else against every
notebook, the whole pack and the benchmark files (BENCH_FILES).
A schedule is not a measurement: after a line <!-- numbers: schedule --> (until the next # or ## heading, or the next
numbers marker) the durations of an agenda (10 min, 3.5 h) are plans and are not checked; every other number there
still is (a schedule that quotes "×1.42" must match like any other line).

How a number matches (match_number): at its written precision. 0.05 matches any value that rounds to it
(|v − 0.05| ≤ 0.005), 16× anything in [15.5, 16.5]; after about/~/≈ an integer's trailing zeros are not significant
(about 500 is 450–550); 3e-3 is a setting, exact to a tenth of its last digit. Signs are ignored (prose dashes are
ambiguous; the outputs carry the sign). A percentage P matches a printed P%, a fraction P/100 or a ratio 1 ± P/100
(+9% ↔ x1.09), not a bare printed P; a factor matches a printed number or the ratio of two measured numbers printed
on one line; 135M matches 135,000,000 (a printed 135M, or a leaf); a time or a memory size matches only a printed
time or size (any unit) or a seconds/_mb leaf; 5/5 matches the same text on screen, or the value 1.0.
The screen is trusted at any precision: it is what the reader compares with. Any other source (the results pack: tens
of thousands of values nobody sees; another notebook's screen; the ratios of printed pairs) confirms a number only if
a chance match is unlikely: fewer than CHANCE of its other values are expected in the number's interval at their
density around it (within a factor 2). So the pack confirms 26.734 but not 0.05: a number that needs the pack to be
true and is not specific must be printed. Sources with fewer than SMALL_SOURCE values are exempt (specific by nature).
Known limit: a range is checked at its two ends, not for values outside it ("7–50×" passes if 7 and 50 are found
even when a third point reads 78×).
"""

from __future__ import annotations

import bisect
import io
import json
import math
import os
import re
import sys
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"
INSTRUCTORS = "INSTRUCTORS"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from prose_numbers_allow import ALLOW  # noqa: E402

# Results-pack files a notebook reads without naming them in its code or outputs.
PACK_EXTRA: dict[str, tuple[str, ...]] = {
    "04": ("bands_d64_L24_s80", "bands_d64_L24_s480"),  # the live runs copy s80; the shipped checkpoints are s480's
}
PACK_SKIP_KEYS = {"train_loss", "train_steps", "val_loss", "val_steps"}  # curves: prose quotes their summaries
CONFIG_KEYS = {"train", "train_config", "model", "model_config", "point", "job", "grid", "owl"}  # settings, not results
EXP_KEYS = re.compile(r"loss|delta|^final$")  # leaves in nats: exp() is a perplexity or a perplexity ratio
SECONDS_KEYS = re.compile(r"(^|_)(s|seconds|wall_s)$")
MB_KEYS = re.compile(r"_mb$")
BENCH_FILES = ("notebook_times.json", "notebook_memory.json", "gguf_conversion.json")  # dated measurements


# ================================================ documents ====================================================

def notebook_paths() -> list[Path]:
    return sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def all_documents() -> list[str]:
    return [p.name[:2] for p in notebook_paths()] + [INSTRUCTORS]


ALL_DOCUMENTS = set(all_documents())


def _src(x) -> str:
    return "".join(x) if isinstance(x, list) else (x or "")


@cache
def _load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def load_notebook(doc: str) -> tuple[str, dict]:
    path = next(p for p in notebook_paths() if p.name.startswith(doc))
    return path.name, _load_json(path)


# ================================================ extraction ===================================================

@dataclass
class Number:
    """One number as the prose writes it, with the values it may stand for."""

    text: str  # as written, e.g. "8" of "8–15%", or "×5.4"
    value: float
    tol: float  # half a unit of the last written digit
    kind: str = "plain"  # plain | percent | factor | fraction
    mult: float = 1.0  # 1e6 for "135M"
    frac: tuple[int, int] | None = None  # (5, 5) for "5/5"
    dim: str = ""  # "time" (then value × scale is in seconds) or "mem" (in MB); such a number matches only its kind
    scale: float = 1.0


@dataclass
class Claim:
    """A number, or a range of two, at one place in a document."""

    doc: str  # "03" or "INSTRUCTORS"
    where: str  # "cell 17" or "line 42"
    text: str  # as written, e.g. "+8–15%"
    numbers: list[Number]
    context: str  # the words around it
    question: bool = False
    scope: str | None = None  # INSTRUCTORS paragraphs about one notebook
    schedule: bool = False  # INSTRUCTORS text after <!-- numbers: schedule -->: its durations are plans
    offset: int = 0  # where it starts in the markdown


SUP = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_ABBREV = re.compile(r"(?:\b(?:Figs?|Eqs?|Tabs?|Sec|Thms?|e\.g|i\.e|al|vs|cf|approx|ca|resp|No|no)|\d)\.$")

_BLANK = [  # (pattern, flags): spans that hold no claims; blanked with spaces so offsets stay those of the source
    (r"```.*?```|~~~.*?~~~", re.S),
    (r"<!--\s*([\w-]+):begin.*?<!--\s*\1:end\s*-->", re.S),
    (r"<!--.*?-->", re.S),
    (r"\$\$.*?\$\$", re.S),
    (r"(?<![\\$])\$(?!\s)[^$\n]+?(?<!\s)\$", 0),
    (r"``.+?``|`[^`\n]+`", 0),
    (r"!\[[^\]]*\]\([^)]*\)", 0),
    (r"(?<=\])\([^)\s]*(?:\s+\"[^\"]*\")?\)", 0),
    (r"^\s*\[[^\]]+\]:\s*\S+.*$", re.M),
    (r"https?://[^\s)>\]]+|www\.[^\s)>\]]+", 0),
    (r"<[^>\n]+>", 0),
    (r"\b\d{4}\.\d{4,5}(?:v\d+)?\b", 0),  # arXiv ids
    (r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}:\d{2}(?::\d{2})?\b", 0),  # dates, clock times
    (r"\b\d+(?:\.\d+){2,}\b|\b\d+\.x\b", 0),  # versions
    (r"(?<![\d,.])(?:199\d|20[0-2]\d)(?![\d,]|\.\d)", 0),  # years
    (r"(?i:\b(?:figs?\.?|figures?|tables?|tabs?\.|eqs?\.?|equations?|lemmas?|theorems?|thms?\.|assumptions?|"
     r"sections?|sec\.|appendix|appendices|footnotes?|notebooks?|propositions?|corollary|definition|algorithm|"
     r"exercises?))"
     r"\s+[A-Z]?\d+(?:\.\d+)*(?:\s*(?:[–—-]|,|and|&|or)\s*[A-Z]?\d+(?:\.\d+)*)*", 0),
    (r"§\s*\d+(?:\.\d+)*", 0),
    (r"(?<![\w.,\-−])0\d(?![\d]|[.,]\d)", 0),  # zero-padded notebook numbers: 03, (07)
    (r"(?<=^)(#{1,6}[ \t]*)\d+(?:\.\d+)*[ \t]*[.·:)]?", re.M),  # heading numbers
    (r"(?<=^)([ \t]*)\d+[.)](?=\s)", re.M),  # ordered-list numbers
]
_BLANK = [(re.compile(p, f), p.startswith("(?<=^)")) for p, f in _BLANK]


def blank_non_claims(text: str) -> str:
    """The text with every span that holds no claim replaced by spaces (same length, newlines kept)."""
    for rx, keep_prefix in _BLANK:
        def sub(m, keep=keep_prefix):
            start = m.start() + (len(m.group(1)) if keep else 0)
            return m.string[m.start():start] + re.sub(r"[^\n]", " ", m.string[start:m.end()])
        text = rx.sub(sub, text)
    return text


_INT = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+"
# time in seconds and memory in MB, as prose and outputs write them
_DIMS = {"ms": ("time", 1e-3), "s": ("time", 1.0), "sec": ("time", 1.0), "seconds": ("time", 1.0),
         "second": ("time", 1.0), "min": ("time", 60.0), "minutes": ("time", 60.0), "minute": ("time", 60.0),
         "h": ("time", 3600.0), "hours": ("time", 3600.0), "hour": ("time", 3600.0), "KB": ("mem", 1e-3),
         "MB": ("mem", 1.0), "MiB": ("mem", 1.048576), "GB": ("mem", 1e3), "GiB": ("mem", 1073.741824)}
_DIM_RX = r"(?:" + "|".join(sorted(_DIMS, key=len, reverse=True)) + r")(?![A-Za-z])"
_TOKEN = re.compile(
    rf"(?P<fac>×\s?|x(?=\d))?(?P<int>{_INT})(?P<frac>\.\d+)?"
    r"(?:(?P<sci>[eE][-+−]?\d+)(?![\w])|\s?[×·x]\s?10(?P<pow>\^\{?[-−]?\d+\}?|[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)|(?P<sup>[⁰¹²³⁴⁵⁶⁷⁸⁹]+))?")
_UNIT = re.compile(r"(?P<pct>\s?%)|(?P<fac>\s?×|x(?![A-Za-z0-9])|-fold\b|\s(?:times|fold)\b)"
                   r"|(?P<mag>(?:[kK]|M|B|T)(?![A-Za-z0-9])|\s(?:M|B)(?![A-Za-z0-9])|\s(?:thousand|million|billion)\b)"
                   r"|(?P<word>(?:st|nd|rd|th)(?![A-Za-z]))|(?P<dim>\s?" + _DIM_RX + ")")
_MAG = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12, "thousand": 1e3, "million": 1e6, "billion": 1e9}
_RANGE_JOIN = re.compile(r"\s*(?:–|—|-|to|\.\.\.?|…)\s*(?:[+\-−]\s?)?")
_APPROX = re.compile(r"(?:~|≈|∼|\babout|\baround|\broughly|\bnearly|\bapproximately|\bsome)\s*[*_]*\s*$", re.I)


def _decimals(s: str | None) -> int:
    return len(s) - 1 if s else 0


def _parse_token(m: re.Match, approx: bool) -> Number:
    digits = m.group("int").replace(",", "")
    dec = _decimals(m.group("frac"))
    mant = float(digits + (m.group("frac") or ""))
    tol = 0.5 * 10 ** -dec
    if approx and not m.group("frac") and not m.group("sci") and not m.group("pow"):
        zeros = len(digits) - len(digits.rstrip("0"))
        if 0 < zeros < len(digits):
            tol = 0.5 * 10 ** zeros
    if m.group("sci") or m.group("pow"):  # 3e-3 is a setting: exact to a tenth of its last digit
        tol = 0.05 * 10 ** -dec
        exp = int((m.group("sci") or m.group("pow")).translate(SUP).strip("eE^{}").replace("−", "-"))
        return Number(m.group(0), mant * 10 ** exp, tol * 10 ** exp)
    if m.group("sup") and digits == "10" and not m.group("frac"):  # 10⁷
        exp = int(m.group("sup").translate(SUP))
        return Number(m.group(0), 10.0 ** exp, 0.5 * 10.0 ** exp)
    return Number(m.group(0), mant, tol)  # a superscript on anything else (0.02²) is an exponent of a formula


def _glued_left(text: str, start: int, skipped_ends: set[int]) -> bool:
    """True when the number starting at `start` is part of a name: Qwen3, L6, Q4_1, GPT-2, Llama-2-70B."""
    if start == 0:
        return False
    c = text[start - 1]
    if c.isalpha() or c == "_" or c == ".":
        return True
    if c == "-" and start >= 2:
        b = text[start - 2]
        return b.isalpha() or b == "_" or (b.isdigit() and (start - 1) in skipped_ends)
    return False


def _question_ends(text: str) -> list[tuple[int, bool]]:
    """(offset of each sentence end, whether it is a question), in order."""
    ends = []
    for m in re.finditer(r"[.!?](?=[\s*_)\"'”’]|$)|\n\s*\n", text):
        if m.group(0) == ".":
            if _ABBREV.search(text[max(0, m.start() - 8):m.start() + 1]):
                continue
        ends.append((m.start(), m.group(0) == "?"))
    ends.append((len(text), False))
    return ends


def _context(text: str, start: int, end: int, width: int = 70) -> str:
    a, b = max(0, start - width), min(len(text), end + width)
    snippet = " ".join(text[a:b].split())
    return ("…" if a else "") + snippet + ("…" if b < len(text) else "")


def extract_numbers(markdown: str, doc: str = "?", where: str = "?") -> list[Claim]:
    """Every number the markdown states, as claims (see the module docstring for what is skipped)."""
    text = blank_non_claims(markdown)
    ends = _question_ends(text)
    raw: list[tuple[int, int, Number]] = []
    skipped_ends: set[int] = set()
    pos = 0
    while True:
        m = _TOKEN.search(text, pos)
        if not m:
            break
        pos = m.end()
        start = m.start("int") if m.group("fac") and m.group("fac").startswith("x") else m.start()
        if m.group("fac") and m.group("fac").startswith("x") and start >= 2 and text[start - 2].isalnum():
            skipped_ends.add(m.end())
            continue
        if not m.group("fac") and _glued_left(text, m.start(), skipped_ends):
            skipped_ends.add(m.end())
            continue
        after = text[m.end():m.end() + 12]
        if after[:1] == "/" and not after[1:2].isdigit():  # 1/√ℓ, 1/ℓ, 1/σ: a formula
            skipped_ends.add(m.end())
            continue
        if after[:1] == "/" and after[1:2].isdigit():  # 5/5, 1/10
            d = re.match(r"/(\d+)(?![\d.])", after)
            if d and not m.group("frac"):
                a, b = int(m.group("int").replace(",", "")), int(d.group(1))
                end = m.end() + d.end()
                if not (end < len(text) and (text[end].isalpha() or text[end] == "_")):
                    raw.append((m.start(), end, Number(text[m.start():end], a / b if b else math.inf, 0.0,
                                                       "fraction", frac=(a, b))))
                pos = end
                continue
        unit = _UNIT.match(after)
        if after[:1].isalpha() and not unit and not m.group("sci"):
            skipped_ends.add(m.end())  # 4bit, 3D: a name
            continue
        if after[:1] == "_":
            skipped_ends.add(m.end())
            continue
        approx = bool(_APPROX.search(text[max(0, m.start() - 16):m.start()]))
        num = _parse_token(m, approx)
        end = m.end()
        if m.group("fac"):
            num.kind = "factor"
        if unit:
            end += unit.end()
            num.text = text[m.start():end].strip()
            if unit.group("pct"):
                num.kind = "percent"
            elif unit.group("fac"):
                num.kind = "factor"
            elif unit.group("mag"):
                num.mult = _MAG[unit.group("mag").strip()]
            elif unit.group("dim"):
                num.dim, num.scale = _DIMS[unit.group("dim").strip()]
        raw.append((m.start(), end, num))
        pos = max(pos, end)

    claims: list[Claim] = []
    i = 0
    while i < len(raw):
        start, end, num = raw[i]
        nums = [num]
        if i + 1 < len(raw):
            s2, e2, n2 = raw[i + 1]
            if _RANGE_JOIN.fullmatch(text[end:s2]) and num.kind != "fraction" and n2.kind != "fraction":
                if num.kind == "plain" and n2.kind in ("percent", "factor"):
                    num.kind = n2.kind
                if num.mult == 1 and n2.mult != 1:
                    num.mult = n2.mult
                if not num.dim and n2.dim:
                    num.dim, num.scale = n2.dim, n2.scale
                nums, end = [num, n2], e2
                i += 1
        i += 1
        question = next(q for off, q in ends if off >= end - 1)
        claims.append(Claim(doc, where, " ".join(markdown[start:end].split()), nums,
                            _context(markdown, start, end), question, offset=start))
    return claims


def document_claims(doc: str) -> list[Claim]:
    """The claims of a notebook's markdown cells, or of INSTRUCTORS.md (with its per-notebook scopes)."""
    if doc == INSTRUCTORS:
        text = (NB_DIR / "INSTRUCTORS.md").read_text(encoding="utf-8")
        return _instructors_claims(text)
    name, book = load_notebook(doc)
    out = []
    for i, cell in enumerate(book["cells"]):
        if cell["cell_type"] == "markdown":
            out += extract_numbers(_src(cell["source"]), doc, f"cell {i}")
    return out


def _instructors_claims(text: str) -> list[Claim]:
    """Claims of INSTRUCTORS.md with their line and scope.

    A paragraph opening with **NN (the "What to say" paragraphs) is checked against notebook NN (until the next
    **-paragraph or heading), and so is the text after a line <!-- numbers: NN --> (until the next heading or
    <!-- numbers: all -->). After a line <!-- numbers: schedule --> (until the next # or ## heading or numbers
    marker) the claims are marked `schedule`: their durations are an agenda's plan, not measurements.
    """
    offsets, scopes, plans, total = [], [], [], 0
    paragraph = marked = None  # a **NN paragraph's notebook; a <!-- numbers: NN --> marker's notebook
    schedule = False
    for line in text.split("\n"):
        para = re.match(r"\*\*(\d\d)\b", line)
        marker = re.match(r"\s*<!--\s*numbers:\s*(\d\d|all|schedule)\s*-->", line)
        if marker:
            schedule = marker.group(1) == "schedule"
            if not schedule:
                marked = None if marker.group(1) == "all" else marker.group(1)
        elif line.startswith("#"):
            paragraph = marked = None
            schedule = schedule and not re.match(r"#{1,2}[ \t]", line)
        elif para:
            paragraph = para.group(1)
        elif line.startswith("**"):
            paragraph = None
        offsets.append(total)
        scopes.append(paragraph or marked)
        plans.append(schedule)
        total += len(line) + 1
    claims = extract_numbers(text, INSTRUCTORS)
    for claim in claims:
        line_no = bisect.bisect_right(offsets, claim.offset) - 1
        claim.where, claim.scope, claim.schedule = f"line {line_no + 1}", scopes[line_no], plans[line_no]
    return claims


# ================================================ sources ======================================================

_OUT_BLANK = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}:\d{2}(?::\d{2})?\b|\b\d+(?:\.\d+){2,}\b")  # dates, versions
_OUT_NUM = re.compile(r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_OUT_UNIT = re.compile(r"\s?(?P<pct>%)|(?P<x>[x×])(?![A-Za-z0-9])|\s?(?P<dim>" + _DIM_RX + ")"
                       r"|(?P<mag>[kKMBT])(?![A-Za-z0-9])")


@dataclass
class Printed:
    value: float  # as printed (1.7 of "1.7 GB"; 8000000 of "8M")
    unit: str  # "", "%", "x", "time", "mem"
    decimal: bool  # written with a decimal point: a measurement rather than a count or an index
    typed: float | None = None  # a time in seconds, a memory size in MB
    shown_unit: str = ""  # "s", "min", "GB" as printed
    glued: bool = False  # part of a name (H200, cu130, L24): counts, but is never suggested as "nearest"


def _numbers_in(line: str) -> list[Printed]:
    """The numbers printed on a line (dates, clock times and versions left out). Numbers inside identifiers count:
    a printed gcide_d128_L96_T8M does tell the reader width 128, 96 blocks and 8M tokens."""
    line = _OUT_BLANK.sub(lambda m: " " * len(m.group(0)), line)
    out = []
    for m in _OUT_NUM.finditer(line):
        s = m.start()
        prev, prev2 = line[s - 1:s], line[s - 2:s - 1]
        factor = prev in ("x", "×") and not (prev2.isalnum() or prev2 == "_")
        v = float(m.group(0).replace(",", ""))
        unit = _OUT_UNIT.match(line, m.end())
        kind = "x" if factor else ""
        if unit and unit.group("pct"):
            kind = "%"
        elif unit and unit.group("x"):
            kind = "x"
        typed = None
        if unit and unit.group("dim"):
            kind, scale = _DIMS[unit.group("dim")]
            typed = v * scale
        elif unit and unit.group("mag"):
            v *= _MAG[unit.group("mag")]
        glued = not factor and (prev.isalpha() or prev == "_")
        out.append(Printed(v, kind, "." in m.group(0), typed=typed, glued=glued,
                           shown_unit=unit.group("dim") if typed is not None else ""))
    return out


def output_texts(cell: dict) -> list[str]:
    """The text a reader sees under a code cell (no figure or widget reprs)."""
    texts = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            texts.append(_src(o.get("text")))
        elif o["output_type"] in ("execute_result", "display_data"):
            data = o.get("data", {})
            if "text/markdown" in data:
                texts.append(_src(data["text/markdown"]))
            elif "text/html" in data:
                texts.append(re.sub(r"<[^>]+>", " ", _src(data["text/html"])))
            elif "text/plain" in data and not any(k.startswith(("image/", "application/vnd.jupyter.widget"))
                                                  for k in data):
                texts.append(_src(data["text/plain"]))
    return texts


def code_literals(source: str) -> list[float]:
    """Numeric literals of a code cell (comments and strings excluded)."""
    src = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
    try:
        toks = tokenize.generate_tokens(io.StringIO(src).readline)
        return [float(t.string.replace("_", "")) for t in toks if t.type == tokenize.NUMBER
                and not t.string.lower().startswith(("0x", "0o", "0b")) and not t.string.endswith(("j", "J"))]
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        return [p.value for p in _numbers_in(re.sub(r"#.*", "", src))]


CHANCE = 0.1  # an untrusted source confirms a number only if a random number as precise would match it less often
SMALL_SOURCE = 50  # ... unless it holds fewer values than this (one notebook's benchmark rows): specific by nature


class Source:
    """One place numbers may come from: a notebook's screen (trusted), a results-pack file, a benchmark file.

    A trusted source confirms a number at any precision (it is what the reader sees). An untrusted one holds many
    values nobody sees; it confirms a number only when the number is specific enough there: the expected count of
    its values falling in the number's interval by chance (their density around it times the interval's width, on
    a log scale) is below CHANCE.
    """

    def __init__(self, name: str, trusted: bool):
        self.name, self.trusted = name, trusted
        self._cols: dict[str, tuple[list[float], list[str]]] = {
            col: ([], []) for col in ("values", "percents", "ratios", "time", "mem")}
        self.text = ""
        self.printed: list[tuple[float, str, str, str]] = []  # (value to compare, as shown, where, dim or "")
        self._frozen = False

    def add(self, value: float, origin: str, col: str = "values"):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            vals, origins = self._cols[col]
            vals.append(abs(float(value)))
            origins.append(origin)
            self._frozen = False

    def add_output(self, text: str, origin: str):
        """Every number printed in `text`, and (trusted sources) the ratio of each two on one line."""
        self.text += "\n" + text
        for line in text.splitlines():
            nums = _numbers_in(line)
            where = f"{origin}: {' '.join(line.split())[:90]}"
            for p in nums:
                self.add(p.value, where)
                if p.unit == "%":
                    self.add(p.value, where, "percents")
                elif p.typed is not None:
                    self.add(p.typed, where, p.unit)
                if not p.glued:
                    self.printed.append((abs(p.value), f"{p.value:g}", where, ""))
                    if p.typed is not None:
                        self.printed.append((abs(p.typed), f"{p.value:g} {p.shown_unit}", where, p.unit))
            if self.trusted:  # ratios of measured values (not of counts and indices)
                nz = [abs(p.value) for p in nums if p.value and p.decimal and not p.unit]
                for a in range(len(nz)):
                    for b in range(len(nz)):
                        if a != b:
                            self.add(nz[a] / nz[b], f"{where} ({nz[a]:g}/{nz[b]:g})", "ratios")

    def add_leaves(self, obj, path: str = ""):
        """Every numeric leaf of a JSON object; losses also as exp() (perplexity), seconds and MB typed."""
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k not in PACK_SKIP_KEYS:
                    self.add_leaves(v, f"{path}.{k}" if path else str(k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                self.add_leaves(v, f"{path}[{i}]")
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            where = f"{self.name}:{path}"
            self.add(obj, where)
            key = re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1]
            if EXP_KEYS.search(key) and abs(obj) < 50:
                self.add(math.exp(obj), f"{where} (exp)")
            if SECONDS_KEYS.search(key):
                self.add(obj, where, "time")
            if MB_KEYS.search(key):
                self.add(obj, where, "mem")

    def freeze(self) -> Source:
        if not self._frozen:
            for col, (vals, origins) in self._cols.items():
                order = sorted(range(len(vals)), key=vals.__getitem__)
                self._cols[col] = ([vals[i] for i in order], [origins[i] for i in order])
            self._frozen = True
        return self

    def find(self, lo: float, hi: float, col: str = "values") -> str | None:
        """Where a value in [lo, hi] came from, if this source holds one and may confirm it."""
        vals, origins = self.freeze()._cols[col]
        i = bisect.bisect_left(vals, lo)
        if i >= len(vals) or vals[i] > hi:
            return None
        # the rule also covers ratios of two printed numbers: nobody sees them, and there are many
        if (not self.trusted or col == "ratios") and len(vals) >= SMALL_SOURCE and self.chance(lo, hi, col) >= CHANCE:
            return None
        return origins[i]

    def chance(self, lo: float, hi: float, col: str = "values") -> float:
        """Expected number of this source's other values in [lo, hi] at their density around it (within 2×)."""
        vals = self.freeze()._cols[col][0]
        x = (lo + hi) / 2
        if x <= 0 or lo <= 0:
            return math.inf
        around = bisect.bisect_right(vals, 2 * x) - bisect.bisect_left(vals, x / 2)
        inside = bisect.bisect_right(vals, hi) - bisect.bisect_left(vals, lo)  # the candidates themselves
        return (around - inside) * math.log(hi / lo) / math.log(4)

    def nearest(self, x: float, k: int = 3, dim: str = "") -> list[tuple[float, str, str]]:
        """The k printed values closest to x (by ratio): (value, as shown, where); times or sizes for a dim."""
        out, seen = [], set()
        mine = [(v, shown, where) for v, shown, where, d in self.printed if d == dim]
        for v, shown, where in sorted(mine, key=lambda p: _log_distance(p[0], x)):
            if v not in seen:
                seen.add(v)
                out.append((v, shown, where))
            if len(out) == k:
                break
        return out


def _log_distance(a: float, b: float) -> float:
    return abs(math.log((abs(a) + 1e-12) / (abs(b) + 1e-12)))


def notebook_source(book: dict, name: str, trusted: bool = True) -> Source:
    """What a notebook shows: its outputs and its code's numeric literals."""
    src = Source(name, trusted)
    for i, cell in enumerate(book["cells"]):
        if cell["cell_type"] != "code":
            continue
        for text in output_texts(cell):
            src.add_output(text, f"{name} cell {i}")
        for v in code_literals(_src(cell["source"])):
            src.add(v, f"{name} cell {i} (code)")
    return src.freeze()


def pack_names() -> list[str]:
    return sorted(p.stem for p in (REPO / "data" / "results").glob("*.json") if p.stem != "MANIFEST")


def pack_for(doc: str, book: dict) -> list[str]:
    """Results-pack files notebook `doc` uses: named in its code or outputs, or listed in PACK_EXTRA."""
    seen = "\n".join(_src(c["source"]) + "\n".join(output_texts(c)) for c in book["cells"] if c["cell_type"] == "code")
    return sorted({n for n in pack_names() if n in seen} | set(PACK_EXTRA.get(doc, ())))


@cache
def pack_sources(name: str) -> tuple[Source, Source]:
    return json_sources(name, _load_json(REPO / "data" / "results" / f"{name}.json"))


def json_sources(name: str, data) -> tuple[Source, Source]:
    """A results-pack file as two sources: all its leaves, and the distinct values of its configuration.

    The configuration (leaves under CONFIG_KEYS: lr, widths, depths, warmup fraction...) is a few dozen distinct
    values, small enough to confirm "width 64" or "10% warmup", which the whole file, dense with measurements, cannot.
    """
    src = Source(f"{name}.json", trusted=False)
    src.add_leaves(data)
    config = Source(f"{name}.json (configuration)", trusted=False)
    seen = set()

    def walk(obj, path: tuple[str, ...]):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, (*path, k))
        elif isinstance(obj, list):
            for v in obj:
                walk(v, path)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and CONFIG_KEYS & set(path) \
                and obj not in seen:
            seen.add(obj)
            config.add(obj, f"{name}.json:{'.'.join(path)}")

    walk(data, ())
    return src.freeze(), config.freeze()


@cache
def bench_source(doc: str | None) -> Source:
    """The notebook-time and memory benchmarks: one notebook's rows, or (None) the whole files."""
    src = Source("benchmarks/results" + (f" (notebook {doc})" if doc else ""), trusted=False)
    for fname in BENCH_FILES:
        path = REPO / "benchmarks" / "results" / fname
        if path.exists():
            data = _load_json(path)
            if doc is None:
                src.add_leaves(data, fname)
            elif doc in data.get("notebooks", {}):
                src.add_leaves(data["notebooks"][doc], f"{fname}:notebooks.{doc}")
    return src.freeze()


@cache
def _screen(doc: str, trusted: bool) -> Source:
    name, book = load_notebook(doc)
    return notebook_source(book, name, trusted)


@cache
def sources_for(doc: str) -> tuple[Source, ...]:
    """Where a number of `doc` may be found: a notebook's own screen (trusted), its pack files and benchmark rows;
    for INSTRUCTORS.md outside a scoped paragraph: every notebook, pack file and benchmark, none trusted."""
    if doc == INSTRUCTORS:
        return (*(_screen(p.name[:2], False) for p in notebook_paths()),
                *(src for n in pack_names() for src in pack_sources(n)), bench_source(None))
    _, book = load_notebook(doc)
    return (_screen(doc, True), *(src for n in pack_for(doc, book) for src in pack_sources(n)))


def _scoped_sources(claim: Claim) -> tuple[Source, ...]:
    """The sources of a claim; a notebook's first cell (its header: "about 61 s") also sees its benchmark rows."""
    if claim.doc == INSTRUCTORS:
        return sources_for(claim.scope) + (bench_source(claim.scope),) if claim.scope else sources_for(INSTRUCTORS)
    return sources_for(claim.doc) + ((bench_source(claim.doc),) if claim.where == "cell 0" else ())


# ================================================ matching =====================================================

def targets(num: Number, trusted: bool) -> list[tuple[float, float, str]]:
    """(lo, hi, column) intervals `num` matches in a source, at its written precision."""
    x, t = abs(num.value), num.tol * (1 + 1e-9) + 1e-12
    if num.dim:  # 15 s, 2.7 min, 1.1 GB: only a time or a memory size of the same magnitude
        x, t = x * num.mult * num.scale, t * num.mult * num.scale
        out = [(x - t, x + t, num.dim)]
        binary = {1e3: 1.024 ** 2, 1.0: 1.024}.get(num.scale) if num.dim == "mem" else None
        if binary:  # GB or MB written, GiB or MiB meant
            out.append((x * binary - t, x * binary + t, "mem"))
        return out
    if num.kind == "fraction":
        out = [(x * (1 - 5e-4) - 1e-12, x * (1 + 5e-4) + 1e-12, "values")]
    else:
        out = [(x - t, x + t, "values")] if num.kind != "percent" else []
        if num.kind == "percent":
            if trusted:
                out.append((x - t, x + t, "percents"))
            out += [((x - t) / 100, (x + t) / 100, "values"), (1 + (x - t) / 100, 1 + (x + t) / 100, "values"),
                    (1 - (x + t) / 100, 1 - (x - t) / 100, "values")]
            if trusted:
                out += [((x - t) / 100, (x + t) / 100, "ratios"), (1 + (x - t) / 100, 1 + (x + t) / 100, "ratios")]
        if num.kind == "factor" and trusted:
            out.append((x - t, x + t, "ratios"))
    if num.mult != 1:  # 135M is 135,000,000 (a bare 135 on screen is some other count)
        out = [(lo * num.mult, hi * num.mult, col) for lo, hi, col in out if col != "ratios"]
    return out


def match_number(num: Number, sources: Iterable[Source]) -> str | None:
    """Where `num` is found among `sources`, or None."""
    for src in sources:
        if num.kind == "fraction" and src.trusted and num.frac and \
                re.search(rf"(?<![\d.]){num.frac[0]}/{num.frac[1]}(?![\d.])", src.text):
            return f"{src.name}: the same fraction"
        for lo, hi, col in targets(num, src.trusted):
            hit = src.find(lo, hi, col)
            if hit:
                return f"ratio of two numbers on {hit}" if col == "ratios" else hit
    return None


def _norm(s: str) -> str:
    s = s.replace("−", "-").replace("—", "–").replace("x", "×").replace(",", "")
    s = re.sub(r"(?<=\d)-(?=\d)", "–", s)
    return re.sub(r"\s+", "", s).lstrip("+-~≈")


def allow_entry(claim: Claim, num: Number | None = None,
                allow: dict[str, dict[str, str]] | None = None) -> tuple[str, str] | None:
    """The allow-list entry (doc, key) that covers this claim (or this end of it), if any.

    Keys are "<number as written>" or "<number as written> @ <words nearby>"; a range's key may be the whole range
    or one end. Entries under "*" apply to every document.
    """
    allow = ALLOW if allow is None else allow
    written = {_norm(claim.text)} | ({_norm(num.text)} if num else {_norm(n.text) for n in claim.numbers})
    context = " ".join(claim.context.split()).lower()
    for doc in (claim.doc, "*"):
        for key in allow.get(doc, {}):
            number, _, near = key.partition("@")
            if _norm(number) in written and (not near.strip() or near.strip().lower() in context):
                return doc, key
    return None


@dataclass
class Mismatch:
    claim: Claim
    number: Number
    nearest: list[tuple[float, str, str]]  # printed values closest to it: (value, as shown, where)
    where: str = "what the notebook shows"

    def allow_key(self) -> str:
        """A key that would cover this number: as written, with the words just before it."""
        c = self.claim
        before = c.context[:max(c.context.find(c.text), 0)].rstrip(" ([+~≈−-").lstrip("…")
        words = " ".join(before.split()[-3:])
        return f"{c.text if len(c.text) < 20 else self.number.text}" + (f" @ {words}" if words else "")

    def nearest_text(self) -> str:
        return "; ".join(f"{shown} ({where})" for _, shown, where in self.nearest) or "—"

    def message(self, name: str) -> str:
        c, n = self.claim, self.number
        scope = f" (a paragraph about notebook {c.scope})" if c.scope else ""
        which = "" if len(c.numbers) == 1 else f" (its end {n.text})"
        return "\n".join([
            f"{name}, {c.where}{scope}: {c.text!r}{which} is not in {self.where}",
            f"    context: {c.context}",
            f"    nearest printed: {self.nearest_text()}",
            f"    fix: write the number that is on screen (or print the one you mean); if it is a constant or quoted "
            f"from a paper, add \"{self.allow_key()}\": \"<why>\" to ALLOW[\"{c.doc}\"] in "
            f"tests/prose_numbers_allow.py"])


def _nearest(srcs: Iterable[Source], num: Number) -> list[tuple[float, str, str]]:
    """The printed values closest to what `num` may stand for (15% is compared with 15 and with x1.15)."""
    srcs = list(srcs)
    screens = [s for s in srcs if s.trusted] or [s for s in srcs if s.printed]
    x = abs(num.value)
    centers = [x * num.mult * num.scale] if num.dim else {"percent": [x, 1 + x / 100, x / 100]}.get(num.kind, [x])
    scored = {}
    for c in centers:
        for item in (p for s in screens for p in s.nearest(c, dim=num.dim)):
            scored[item] = min(scored.get(item, math.inf), _log_distance(item[0], c))
    return sorted(scored, key=scored.get)[:3]


def check_claims(claims: Iterable[Claim], sources=_scoped_sources, allow=None,
                 refer=sources_for) -> tuple[list[Mismatch], set]:
    """Mismatches among `claims`, and the allow-list entries used.

    `sources(claim)` gives where to look; `refer(NN)` where an entry "see notebook NN" sends the number.
    """
    allow = ALLOW if allow is None else allow
    bad, used = [], set()
    for claim in claims:
        if claim.question:
            continue
        srcs = sources(claim)
        for num in claim.numbers:
            if claim.schedule and num.dim == "time":  # an agenda's duration: a plan, not a measurement
                continue
            entry = allow_entry(claim, num, allow)  # first: a quote stays a quote even where it matches by chance
            if entry:
                used.add(entry)
                ref = re.match(r"see notebook (\d\d)\b", allow[entry[0]][entry[1]])
                if ref and not match_number(num, refer(ref.group(1))):
                    bad.append(Mismatch(claim, num, _nearest(refer(ref.group(1)), num),
                                        f"notebook {ref.group(1)}, where its allow-list entry sends it"))
            elif not match_number(num, srcs):
                bad.append(Mismatch(claim, num, _nearest(srcs, num)))
    return bad, used


def document_name(doc: str) -> str:
    return "INSTRUCTORS.md" if doc == INSTRUCTORS else load_notebook(doc)[0]


def check_document(doc: str) -> tuple[list[Mismatch], set]:
    return check_claims(document_claims(doc))


# ================================================ the checks ===================================================

def _checked() -> list[str]:
    """Every document; PROSE_NUMBERS=03,INSTRUCTORS narrows the run to those ("all": every one)."""
    env = os.environ.get("PROSE_NUMBERS", "").strip()
    if not env or env == "all":
        return sorted(ALL_DOCUMENTS)
    return sorted(d.strip() for d in env.split(",") if d.strip())


_CHECKED = _checked()


@pytest.mark.parametrize("doc", _CHECKED)
def test_prose_numbers_agree_with_outputs(doc):
    assert doc in ALL_DOCUMENTS, f"{doc!r} is not a document here; known: {sorted(ALL_DOCUMENTS)}"
    bad, used = check_document(doc)
    name = document_name(doc)
    if bad:
        pytest.fail(f"{len(bad)} number(s) in {name} are not in what it shows:\n\n" +
                    "\n\n".join(m.message(name) for m in bad), pytrace=False)
    unused = [k for k in ALLOW.get(doc, {}) if (doc, k) not in used]
    assert not unused, f"allow-list entries of {name} that no number needs any more (delete them): {unused}"


@pytest.mark.skipif(set(_CHECKED) != ALL_DOCUMENTS, reason="only once every document is checked")
def test_every_shared_allow_entry_is_still_needed():
    used = set().union(*(check_document(doc)[1] for doc in sorted(ALL_DOCUMENTS)))
    unused = [k for k in ALLOW.get("*", {}) if ("*", k) not in used]
    assert not unused, f"ALLOW['*'] entries no document needs any more (delete them): {unused}"


def test_allow_list_is_well_formed():
    for doc, entries in ALLOW.items():
        assert doc == "*" or doc in ALL_DOCUMENTS, f"ALLOW[{doc!r}]: not a document ({sorted(ALL_DOCUMENTS)})"
        for key, reason in entries.items():
            assert re.search(r"\d", key.partition("@")[0]), f"ALLOW[{doc!r}][{key!r}]: the key starts with a number"
            assert isinstance(reason, str) and len(reason.split()) >= 3, \
                f"ALLOW[{doc!r}][{key!r}]: say why this number need not match an output"


def test_every_notebook_and_the_instructor_guide_are_documents():
    assert ALL_DOCUMENTS == {p.name[:2] for p in notebook_paths()} | {INSTRUCTORS}
    assert len(ALL_DOCUMENTS) >= 9


def test_every_document_parses():
    # the extractor runs on every document today, checked or not (a crash here would hide numbers)
    for doc in sorted(ALL_DOCUMENTS):
        claims = document_claims(doc)
        assert claims, f"{doc}: no numbers found at all (did the extractor break?)"
        sources_for(doc)


# ---------------------------------------- unit tests: the extractor -------------------------------------------

def _texts(md: str) -> list[str]:
    return [c.text for c in extract_numbers(md) if not c.question]


def _values(md: str) -> list[tuple]:
    return [tuple((round(n.value, 12), n.kind) for n in c.numbers) for c in extract_numbers(md) if not c.question]


def test_extracts_plain_decimal_percent_factor_and_thousands():
    md = "The loss fell by 0.05 nats over 4,096 tokens; 44% of the cost, ×5.4 and 36× slower, x1.06 too, 3-fold."
    assert _texts(md) == ["0.05", "4,096", "44%", "×5.4", "36×", "x1.06", "3-fold"]
    assert _values(md) == [((0.05, "plain"),), ((4096.0, "plain"),), ((44.0, "percent"),), ((5.4, "factor"),),
                           ((36.0, "factor"),), ((1.06, "factor"),), ((3.0, "factor"),)]


def test_extracts_ranges_with_the_unit_on_both_ends():
    claims = extract_numbers("It costs +8–15% perplexity, 7–50× less, between 0.07–0.12, from −0.2 to −0.3 nats, "
                             "and x1.06 to x1.58; layers 12-18.")
    assert [c.text for c in claims] == ["8–15%", "7–50×", "0.07–0.12", "0.2 to −0.3", "x1.06 to x1.58", "12-18"]
    assert [n.kind for n in claims[0].numbers] == ["percent", "percent"]
    assert [n.kind for n in claims[1].numbers] == ["factor", "factor"]
    assert [n.value for n in claims[3].numbers] == [0.2, 0.3]


def test_extracts_scientific_and_magnitudes():
    vals = _values("lr 3e-3, or 3×10⁻³, a 10⁷ axis, gap 2.1e-07; 135M parameters, 8 M tokens, 164k characters, "
                   "2.6 billion tokens")
    assert [v[0][0] for v in vals[:4]] == [0.003, 0.003, 1e7, pytest.approx(2.1e-07)]
    mults = [n.mult for c in extract_numbers("135M parameters, 8 M tokens, 164k characters, 2.6 billion tokens")
             for n in c.numbers]
    assert mults == [1e6, 1e6, 1e3, 1e9]


def test_precision_is_the_written_one():
    (c,) = extract_numbers("about 0.050 nats")
    assert c.numbers[0].tol == pytest.approx(0.0005)
    (c,) = extract_numbers("costs 16 s")
    assert c.numbers[0].tol == 0.5
    (c,) = extract_numbers("costs about 500 MB")
    assert c.numbers[0].tol == 50  # after 'about', trailing zeros are not significant
    (c,) = extract_numbers("exactly 500 MB")
    assert c.numbers[0].tol == 0.5


def test_skips_what_is_not_a_claim():
    md = ("# 03 · Train it live\n## 2 · Why\n### 1. First\n1. **The symptom** in notebook 01 and notebooks 02–04 (07).\n"
          "See Fig. 4, Figs. 2–4 and 7, Table 6, Eqs. 21–23, Lemma 3.2, section 2, §1.7 and footnote 1.\n"
          "SmolLM2-135M, GPT-2, Llama-2-70B, Qwen3, all-MiniLM-L6-v2, Q4_1, bf16, x86_64, H200 and 4bit.\n"
          "arXiv 2502.05795v5, torch 2.11.0, transformers 5.x, on 2026-11-28 at 20:42, Sun et al. 2025.\n"
          "Code `lr=3e-3` and $\\sigma^2 \\sim \\ell^{2-2p}$ and $$x_{\\ell+1} = 2$$, a [link](https://x.org/a/12345) "
          "and https://arxiv.org/abs/2002.04745, 1/√ℓ and 1/ℓ.\n"
          "```python\nx = 42\n```\n<!-- timings:begin -->\n| 00 | 14 s |\n<!-- timings:end -->\n")
    assert _texts(md) == []


def test_numbers_in_questions_are_not_claims():
    claims = extract_numbers("*Predict:* by what factor does it grow — 2×, 20×, 200×? It grew 16×. "
                             "See Fig. 4. Is it 3? Yes.")
    assert [(c.text, c.question) for c in claims] == [("2×", True), ("20×", True), ("200×", True), ("16×", False),
                                                      ("3", True)]


def test_fractions():
    claims = extract_numbers("LNS was better in 5/5 seeds; below 1/10 of Pre-LN's.")
    assert [(c.text, c.numbers[0].kind, c.numbers[0].value) for c in claims] == \
        [("5/5", "fraction", 1.0), ("1/10", "fraction", 0.1)]


def test_context_and_positions():
    (c,) = extract_numbers("No layer is free: the cheapest single removal still costs about +8–15% perplexity.",
                           "01", "cell 17")
    assert (c.doc, c.where, c.text) == ("01", "cell 17", "8–15%")
    assert "cheapest single removal" in c.context


# ---------------------------------------- unit tests: the matcher ---------------------------------------------

def _book(markdown: str, *outputs: str, code: str = "print()") -> dict:
    return {"cells": [{"cell_type": "markdown", "source": markdown, "metadata": {}},
                      {"cell_type": "code", "source": code, "metadata": {}, "outputs": [
                          {"output_type": "stream", "name": "stdout", "text": o} for o in outputs]}]}


def _check(markdown: str, *outputs: str, code: str = "print()", pack=None, allow=None, refer=None) -> list[str]:
    book = _book(markdown, *outputs, code=code)
    srcs = [notebook_source(book, "99_synthetic.ipynb")]
    if pack is not None:
        srcs += json_sources("pack", pack)
    claims = extract_numbers(markdown, "99", "cell 0")
    bad, _ = check_claims(claims, sources=lambda c: srcs, allow=allow or {}, refer=refer or sources_for)
    return [m.number.text for m in bad]


def test_match_at_printed_precision():
    out = "final val 2.911 ± 0.035; skip 0.0493; RMS x16 over 28 layers"
    assert _check("Pre-LN ends at 2.91, spread 0.04, skip 0.05 nats, grows 16×.", out) == []
    assert _check("Pre-LN ends at 2.92.", out) == ["2.92"]  # off by one in the last written digit
    assert _check("the skip costs 0.0494.", out) == ["0.0494"]  # more precise than the screen
    assert _check("the skip costs 0.06.", out) == ["0.06"]


def test_percentages_fractions_and_ratios():
    out = "cheapest: x1.09; share 0.44; ratio 1.94; live 2.867 band 2.865 .. 2.949"
    assert _check("It costs +9% perplexity; the deep half has 44%; 194% of block 1.", out) == []
    assert _check("It costs +19% perplexity.", out) == ["19%"]
    # a factor may be the ratio of two numbers printed on one line
    assert _check("Block 24 is about ×4.2 block 1.", "logit spread block 1 0.29, block 24 1.232") == []
    assert _check("Block 24 is about ×5.3 block 1.", "logit spread block 1 0.29, block 24 1.232") == ["×5.3"]


def test_ranges_need_both_ends():
    out = "n=1: d = 0.067\nn=2: d = 0.093\nlast 0.12"
    assert _check("Most layers turn it by 0.07–0.12.", out) == []
    assert _check("Most layers turn it by 0.07–0.15.", out) == ["0.15"]


def test_results_pack_leaves_and_views():
    pack = {"data": {"removal": {"delta": [0.0862, 2.5]}, "train_loss": [4.123],
                     "runs": [{"final": 1.0321, "wall_s": 150.0, "peak_mb": 1308}]}}
    assert _check("Removing it costs 0.086 nats (x1.09 perplexity), final 1.032, 2.5 min, 1.31 GB.", pack=pack) == []
    assert _check("The first training loss was 4.123.", pack=pack) == ["4.123"]  # raw curves are not indexed


def test_the_pack_confirms_only_numbers_too_specific_to_match_by_chance():
    rng = [0.001 * i for i in range(1, 1000)]  # a dense haystack: every 2-decimal number in (0, 1) is in it
    pack = {"curve_summary": rng, "final": 2.4567}
    assert _check("It ended at 2.457.", pack=pack) == []  # specific: nothing else near it
    assert _check("Skipping costs 0.05 nats.", pack=pack) == ["0.05"]  # would match the haystack by chance
    assert _check("Skipping costs 0.05 nats.", "skip 0.0493", pack=pack) == []  # on screen: fine at any precision
    src = Source("pack.json", trusted=False)
    src.add_leaves(pack)
    assert src.chance(0.045, 0.055) > 1 > CHANCE > src.chance(2.4565, 2.4575)


def test_the_pack_configuration_confirms_settings():
    haystack = [0.001 * i for i in range(1, 1000)]
    pack = {"runs": [{"train_config": {"lr": 0.003, "warmup_frac": 0.1, "eval_every": 10}, "skip_delta": haystack,
                      "model_config": {"d_model": 64, "n_layers": 24}}]}
    assert _check("Width 64, 24 blocks, lr 3e-3, 10% warmup, validated every 10 steps.", pack=pack) == []
    assert _check("The skip costs 0.2 nats.", pack=pack) == ["0.2"]  # among results only: too coarse to confirm
    assert _check("Width 96.", pack=pack) == ["96"]


def test_percent_and_factor_need_their_own_kind_on_screen():
    # "8%" is not confirmed by a printed 8 (a count), but is by 8% or by a ratio 1.08
    assert _check("It costs 8% more.", "n=8: layers 11..18") == ["8%"]
    assert _check("It costs 8% more.", "share 8%") == []
    assert _check("It costs 8% more.", "ratio x1.08") == []


def test_code_literals_count_and_comments_do_not():
    code = "train(lr=3e-3, warmup=0.1)  # about 15 min on a CPU\nprint(f'{x:.3f}')"
    assert _check("Learning rate 3e-3 with 10% warmup.", code=code) == []
    assert _check("It takes 15 min.", code=code) == ["15 min"]


def test_allow_list_entries_by_number_and_nearby_words():
    allow = {"99": {"26.73 @ LLaMA-130M": "paper Table 1", "0.02": "init std of every matrix"}}
    md = ("LLaMA-130M goes from 26.73 to 25.76, init 0.02. " + "Many more words here. " * 5
          + "Elsewhere 26.73 again.")
    assert _check(md, allow=allow) == ["25.76", "26.73"]  # the second 26.73 is not near 'LLaMA-130M'
    allow["*"] = {"25.76 @ LLaMA-130M": "paper Table 1"}
    assert _check(md, allow=allow) == ["26.73"]
    allow["99"]["8–15%"] = "a range is allowed as written"
    assert _check("costs +8–15% perplexity", allow=allow) == []


def test_failure_message_names_everything_a_writer_needs():
    book = _book("No layer is free: the cheapest single removal still costs about +8–15% perplexity.",
                 "cheapest 5 (live): ['x1.06', 'x1.08', 'x1.13']")
    srcs = [notebook_source(book, "01_curse.ipynb")]
    claims = extract_numbers(_src(book["cells"][0]["source"]), "01", "cell 0")
    bad, _ = check_claims(claims, sources=lambda c: srcs, allow={})
    assert [m.number.text for m in bad] == ["15%"]
    msg = bad[0].message("01_curse.ipynb")
    for part in ("01_curse.ipynb", "cell 0", "8–15%", "end 15%", "cheapest single removal", "nearest printed: 1.13",
                 "write the number that is on screen", 'ALLOW["01"]', "tests/prose_numbers_allow.py"):
        assert part in msg, (part, msg)
    # the key the message suggests does silence it
    key = bad[0].allow_key()
    assert key == "8–15% @ still costs about"
    assert check_claims(claims, sources=lambda c: srcs, allow={"01": {key: "a reason here"}})[0] == []


def test_times_and_memory_match_only_times_and_memory():
    assert _check("It takes 15 s.", "n=4: most similar block = layers 12..15") == ["15 s"]
    assert _check("It takes 15 s.", "this notebook: 15 s wall") == []
    assert _check("It takes about 2.7 min.", "this notebook: 163 s wall") == []  # 2.65-2.75 min
    assert _check("It takes about 2.7 min.", "this notebook: 170 s wall") == ["2.7 min"]
    assert _check("Peak 1.3 GB.", "peak memory 1324 MB") == []
    assert _check("Peak 1.3 GB.", "the kit uses 1.3 threads") == ["1.3 GB"]


def test_magnitudes_match_the_multiplied_value():
    assert _check("Each point trains on 8M tokens.", "MEASURED: gcide_d128_L12_T8M: tie") == []
    assert _check("A 135M model.", "parameters_M: 134.5") == ["135M"]  # a bare 134.5 is not 135,000,000
    assert _check("1.3M parameters.", pack={"n_params": 1_312_000}) == []


def test_ratios_of_printed_pairs_count_only_when_specific():
    # one printed line with many measured values makes almost every ratio near 1 available by chance
    line = "BERT RMS by layer: " + ", ".join(f"{0.50 + 0.01 * i:.2f}" for i in range(12))
    assert _check("Each layer grows it by 15%.", line) == ["15%"]
    assert _check("Block 24 is ×4.2 block 1.", "logit spread block 1 0.29, block 24 1.232") == []


def test_see_notebook_entries_send_the_number_to_that_notebook():
    other = [notebook_source(_book("", "rank correlation, all layers: 0.75"), "01_other.ipynb")]
    allow = {"99": {"0.75 @ rank correlation": "see notebook 01 (its printed rank correlation)",
                    "0.85 @ rank correlation": "see notebook 01 (its printed rank correlation)"}}
    md = "Angular distance is a rough proxy (notebook 01: rank correlation ≈ 0.75)."
    assert _check(md, allow=allow, refer=lambda nb: other) == []
    bad_md = "Angular distance is a rough proxy (notebook 01: rank correlation ≈ 0.85)."
    claims = extract_numbers(bad_md, "99", "cell 0")
    bad, _ = check_claims(claims, sources=lambda c: [], allow=allow, refer=lambda nb: other)
    assert [m.number.text for m in bad] == ["0.85"] and "notebook 01" in bad[0].message("99.ipynb")


def test_instructors_paragraphs_are_scoped_to_their_notebook():
    text = ("## What to say\n\n**01 · the curse.**\n- It grows 16× over 30 layers.\n\n**03 · train.**\n"
            "- LNS was 0.29 nats ahead.\n\n## Questions\n\n**\"Why?\"** Because 7 things.\n"
            "<!-- numbers: 07 -->\n**\"And?\"** 12 blocks.\n<!-- numbers: all -->\nThen 5.\n")
    claims = _instructors_claims(text)
    assert [(c.text, c.where, c.scope) for c in claims] == [
        ("16×", "line 4", "01"), ("30", "line 4", "01"), ("0.29", "line 7", "03"), ("7", "line 11", None),
        ("12", "line 13", "07"), ("5", "line 15", None)]


def test_an_agenda_s_durations_are_plans_and_everything_else_is_checked():
    text = ("## Agendas\n<!-- numbers: schedule -->\n### Short: 90 minutes\n| 0:05–0:20 | 01 | 15 min, show ×1.42 |\n"
            "| 0:20 | 02 | 2.5 h, 7 seeds |\n## Timings\nIt took 15 min.\n"
            "<!-- numbers: schedule -->\nA 10 min break.\n<!-- numbers: 03 -->\nA 20 min run.\n")
    claims = _instructors_claims(text)
    assert [(c.text, c.schedule) for c in claims] == [
        ("90 minutes", True), ("15 min", True), ("×1.42", True), ("2.5 h", True), ("7", True), ("15 min", False),
        ("10 min", True), ("20 min", False)]
    bad, _ = check_claims(claims, sources=lambda c: [], allow={})
    assert [m.number.text for m in bad] == ["×1.42", "7", "15 min", "20 min"]  # only the plans' durations pass


def test_exercise_numbers_are_references():
    assert _texts("Exercise 2.1 builds the block; exercises 2.3 and 2.4 compare the powers.") == []


# ================================================ the report ===================================================

def report(docs: Iterable[str]) -> str:
    """Every mismatch of `docs` as markdown (what `python tests/test_prose_numbers.py` prints)."""
    parts, total = [], 0
    rows = []
    for doc in docs:
        bad, used = check_document(doc)
        name = document_name(doc)
        unused = [k for k in ALLOW.get(doc, {}) if (doc, k) not in used]
        total += len(bad)
        rows.append(f"| {name} | {len(bad)} | {len(used)} | {len(unused)} |")
        parts.append(f"## {name}: {len(bad)} mismatch(es)\n")
        if not bad:
            parts.append("Nothing to fix.\n")
        for m in bad:
            c, n = m.claim, m.number
            end = "" if len(c.numbers) == 1 else f" (end `{n.text}`)"
            scope = f" [scope: notebook {c.scope}]" if c.scope else ""
            parts.append(f"- **{c.where}**{scope}: `{c.text}`{end}\n  - context: {c.context}\n"
                         f"  - nearest printed: {m.nearest_text()}")
        if unused:
            parts.append(f"\nAllow-list entries not needed by this document: {unused}")
        parts.append("")
    head = ["| document | mismatches | allow-list entries used | unused entries |", "|---|---|---|---|", *rows,
            f"| **total** | **{total}** | | |", ""]
    return "\n".join(head + parts)


if __name__ == "__main__":
    print(report(sys.argv[1:] or all_documents()))
