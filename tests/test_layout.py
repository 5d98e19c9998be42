"""The package stays readable (issue 12): measurable limits on size, function length and line length."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "curse_of_depth"
FILES = sorted(PACKAGE.rglob("*.py"))
CORE = [f for f in FILES if "workshop" not in f.relative_to(PACKAGE).parts]

MAX_CORE_LINES = 4_500
MAX_FUNCTION_LINES = 80
MAX_LONG_LINE_SHARE = 0.05  # lines over 100 characters
LONG = 100


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_the_teaching_core_stays_small():
    total = sum(len(lines(f)) for f in CORE)
    assert total <= MAX_CORE_LINES, f"the core has {total} lines (limit {MAX_CORE_LINES}); move tooling to workshop/"


def test_no_function_is_longer_than_80_lines():
    long = [f"{f.relative_to(PACKAGE)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for f in FILES for n in ast.walk(ast.parse(f.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, "split these functions: " + "; ".join(long)


def test_few_lines_are_longer_than_100_characters():
    all_lines = [line for f in FILES for line in lines(f)]
    share = sum(len(line) > LONG for line in all_lines) / len(all_lines)
    assert share <= MAX_LONG_LINE_SHARE, f"{share:.1%} of the package's lines exceed {LONG} characters"


def test_the_model_is_plain_pytorch_with_the_block_up_front():
    source = (PACKAGE / "model.py").read_text()
    assert "autograd.Function" not in source
    block = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Block")
    assert block.lineno < 170, f"class Block starts at line {block.lineno}; a reader should reach it sooner"


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_modules_do_not_import_the_workshop_at_module_level(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            assert "workshop" not in module and not any(a.name == "workshop" for a in node.names), \
                f"{path.name}:{node.lineno} imports {module} at module level"
        elif isinstance(node, ast.Import):
            assert not any("workshop" in a.name for a in node.names), f"{path.name}:{node.lineno}"
