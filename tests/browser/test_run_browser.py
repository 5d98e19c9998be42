"""The parts of tests/browser/run_browser.py that need no browser: what it excuses, when it can run, what it expects.

The browser test itself is `make browser-test` (JupyterLab and RISE in headless Chromium); `make test` only says
whether it could run here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from curse_of_depth._files import REPO_ROOT

_spec = importlib.util.spec_from_file_location("run_browser", REPO_ROOT / "tests" / "browser" / "run_browser.py")
bt = importlib.util.module_from_spec(_spec)
sys.modules["run_browser"] = bt  # dataclasses look their module up
_spec.loader.exec_module(bt)


def test_only_external_resources_are_excused_as_offline():
    msg = "Failed to load resource: net::ERR_NAME_NOT_RESOLVED"
    assert bt.benign_reason(msg, "https://mybinder.org/badge_logo.svg", "lab")
    assert bt.benign_reason(msg, "https://fonts.googleapis.com/css?family=Lato", "rise")
    # the test's own server failing is never noise
    assert bt.benign_reason(msg, "http://127.0.0.1:8888/api/kernels", "lab") is None


def test_rise_noise_is_excused_on_rise_pages_only():
    widgets = "Error: Shared module @jupyterlab/console doesn't exist in shared scope default"
    assert bt.benign_reason(widgets, "http://127.0.0.1:1/static/rise/483.bundle.js", "rise")
    assert bt.benign_reason(widgets, "http://127.0.0.1:1/static/lab/x.js", "lab") is None
    rec = "RangeError: Maximum call stack size exceeded"
    assert bt.benign_reason(rec, "http://127.0.0.1:1/static/rise/4437.bundle.js", "rise")
    assert bt.benign_reason(rec, "http://127.0.0.1:1/lab/extensions/x/remoteEntry.js", "rise") is None
    assert bt.benign_reason(rec, "http://127.0.0.1:1/static/rise/4437.bundle.js", "lab") is None
    css = "Failed to load resource: the server responded with a status of 404 (Not Found)"
    assert bt.benign_reason(css, "http://127.0.0.1:1/files/notebooks/02_why_variance_grows.css", "rise")
    assert bt.benign_reason(css, "http://127.0.0.1:1/files/notebooks/rise.css", "rise") is None  # the kit ships it
    assert bt.benign_reason("TypeError: x is undefined", "http://127.0.0.1:1/static/lab/x.js", "lab") is None


def test_status_without_chromium_says_why_and_how(monkeypatch):
    monkeypatch.setenv("COD_CHROMIUM", "/nonexistent/chrome")
    ok, why = bt.status()
    assert not ok and "Chromium" in why and "/nonexistent/chrome" in why and "make browser-test" in why


def test_status_line_for_make_test_always_exits_zero():
    # `make test` runs this: with or without Chromium it prints one line and passes
    env = {"PATH": "/nonexistent", "COD_CHROMIUM": "/nonexistent/chrome"}
    r = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "browser" / "run_browser.py"), "--status"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("browser test skipped: no Chromium found"), r.stdout + r.stderr


def test_expected_slides_follow_the_metadata():
    def cell(kind):
        return {"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": kind}}, "source": ""}

    nb = {"cells": [cell("slide"), cell("skip"), cell("-"), cell("subslide"), cell("fragment"), cell("slide"),
                    cell("notes")]}
    assert bt.expected_slides(nb) == 3
    assert bt.expected_slides({"cells": [cell("-"), cell("slide")]}) == 2  # the first cell always opens a slide


def test_widget_repr_and_frozen_bar_patterns():
    assert bt.WIDGET_REPR.search("VBox(children=(HBox(children=(IntSlider(value=128")
    assert bt.FROZEN_BAR.search("removing each layer:   0%|          | 0/435 [00:00<?, ?it/s]")
    assert not bt.FROZEN_BAR.search("lns L4 d32: 100%|##########| 30/30 [00:02<00:00]")  # finished: fine
    assert not bt.WIDGET_REPR.search("CLAIM HOLDS: Post-LN stays flat") and not bt.FROZEN_BAR.search("50 % of it")
    assert bt.ECHOED_CLAIM.match("'CLAIM HOLDS: x'") and not bt.ECHOED_CLAIM.match("CLAIM HOLDS: x")


def test_kit_jupyterlab_settings_turn_the_news_off():
    settings = json.loads((REPO_ROOT / "config" / "jupyterlab" / "overrides.json").read_text())
    notif = settings["@jupyterlab/apputils-extension:notification"]
    assert notif["fetchNews"] == "false" and notif["checkForUpdates"] is False
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "config/jupyterlab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json" in makefile
    assert "$(ALLOW_ROOT)" in makefile and "--allow-root" in makefile
