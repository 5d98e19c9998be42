"""Exercise checkers: run the attendee's code on a small case and answer in one line.

Every notebook exercise has a blank cell that runs (its function body is ``...``, so it returns None) and a
checker cell right after it. A checker never raises: it returns a ``Verdict`` whose one-line text says

* ``✓ correct`` and what was checked, or
* ``✗`` the mistake by name and a hint (each classic mistake has its own message), or
* ``…`` not attempted yet, or
* ``✗`` your code raised an error, with the error.

so "Run All" never stops at an exercise. Checkers for notebook NN live in ``exercises/nbNN.py``; solutions are in
``notebooks/solutions/``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

CORRECT, WRONG, NOT_ATTEMPTED, ERROR = "correct", "wrong", "not attempted", "error"
_SYMBOL = {CORRECT: "✓", WRONG: "✗", NOT_ATTEMPTED: "…", ERROR: "✗"}


@dataclass(frozen=True)
class Verdict:
    """A checker's answer; shown as one line (the notebook cell ends with the checker call)."""

    exercise: str
    status: str
    message: str

    @property
    def ok(self) -> bool:
        return self.status == CORRECT

    def __str__(self) -> str:
        return f"{_SYMBOL[self.status]} Exercise {self.exercise}: {self.message}"

    def __repr__(self) -> str:  # what Jupyter shows for the cell's last expression: the one line, once
        return str(self)


def correct(exercise: str, what: str) -> Verdict:
    return Verdict(exercise, CORRECT, f"correct — {what}")


def wrong(exercise: str, mistake: str, hint: str) -> Verdict:
    return Verdict(exercise, WRONG, f"{mistake}. Hint: {hint}")


def not_attempted(exercise: str) -> Verdict:
    return Verdict(exercise, NOT_ATTEMPTED, "not attempted yet — write your code in the cell above, run it, "
                                            "then run this cell again")


def attempt(exercise: str, fn: Callable, *args, mistakes: dict | None = None, **kwargs):
    """Call the attendee's ``fn``; returns (result, None) or (None, Verdict) when it is a stub or raised.

    ``mistakes`` maps an exception type that betrays a classic mistake to ``f(exc) -> Verdict`` (its own
    message); any other exception is reported as an error."""
    if fn is None:
        return None, not_attempted(exercise)
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError:
        return None, not_attempted(exercise)
    except Exception as exc:  # the attendee's code: report, never raise
        for kind, verdict in (mistakes or {}).items():
            if isinstance(exc, kind):
                return None, verdict(exc)
        return None, Verdict(exercise, ERROR, f"your code raised {type(exc).__name__}: {exc}")
    if out is None or out is Ellipsis:
        return None, not_attempted(exercise)
    return out, None


def close(a, b, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and values within tolerance (tensors, arrays, numbers or sequences of them)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=rtol))
    if isinstance(a, Sequence) and isinstance(b, Sequence):
        return len(a) == len(b) and all(close(x, y, atol, rtol) for x, y in zip(a, b))
    try:
        return math.isclose(float(a), float(b), abs_tol=atol, rel_tol=rtol)
    except (TypeError, ValueError):
        return False


def diagnose(exercise: str, out, reference, mistakes: Sequence[tuple[object, str, str]], what: str,
             fallback_hint: str, atol: float = 1e-5, rtol: float = 1e-4) -> Verdict:
    """Compare ``out`` with the reference, then with each known mistake's output (name, hint), within ``close``'s
    tolerances."""
    if close(out, reference, atol, rtol):
        return correct(exercise, what)
    for value, mistake, hint in mistakes:
        if close(out, value, atol, rtol):
            return wrong(exercise, mistake, hint)
    return wrong(exercise, "not the expected result (and not one of the usual mistakes)", fallback_hint)
