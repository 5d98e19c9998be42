#!/usr/bin/env python3
"""The kit in a real browser: every notebook in JupyterLab and as a RISE slideshow, in headless Chromium.

    make browser-test                          # all notebooks (the Makefile installs the `browser` extra)
    python tests/browser/run_browser.py --only 02   # some notebooks
    python tests/browser/run_browser.py --status    # can it run here? (what `make test` prints)

It starts JupyterLab from this Python's environment (the kit's .venv) on 127.0.0.1 (a free port, a random token,
``--allow-root`` only as root), with COD_MODE=smoke in the server's environment, serving *copies* of the notebooks
from a temporary folder: the committed notebooks are never opened, and the script checks at the end that their
bytes did not change. Chromium is the system's (Debian's ``chromium``; ``COD_CHROMIUM=/path`` picks another),
driven by Playwright from PyPI (Playwright's own browser download is not used). For each notebook, in order:

1. **Open** it in JupyterLab; the kernel starts. The notebook must not turn dirty and saving it must rewrite the
   exact committed bytes (the stored kernel name is the one `make lab` registers).
2. **Run All** (``notebook:run-all-cells``, the *Run → Run All Cells* menu item) and wait for the kernel to go idle.
   Fails on: an error output or a cell that did not run; a widget that did not render ("Error displaying
   widget", "Loading widget...", or a widget's text repr such as ``VBox(children=``); a progress bar left in the
   outputs; a claim line echoed as ``Out[]``; a browser console error or uncaught exception that is not on the
   explicit list of known-benign noise (``BENIGN``, one reason each).
3. Notebook 02 (``--explorer``): moves each control of the ipywidgets explorer and checks that the figure's
   image changes (and how long the redraw took).
4. **Save** (what RISE's toolbar button does first), then open the notebook as a **RISE slideshow** at 1280x720
   and step through every slide and fragment. Each slide must fit, or (RISE's scroll, on in the notebooks'
   metadata) scroll to its end with its last cell in view; every figure must fit one screen; nothing may be cut
   at the right edge; the number of slides must match the slide metadata. The explorer's slide must show the
   static three-preset figure (the widget cannot render in RISE), never a widget repr.

Also checked once: no JupyterLab news pop-up (the kit's settings, config/jupyterlab/overrides.json) and that the
menu paths the notebooks name (*View → Appearance → Presentation Mode*) exist.
Screenshots (each notebook after its run, its explorer, its first and tallest slide) and report.json go to
build/browser/ (git-ignored); the last line is "browser-test: N passed, N failed".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[2]
NB_DIR = REPO / "notebooks"
OUT_DEFAULT = REPO / "build" / "browser"
VIEWPORT = {"width": 1280, "height": 720}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
EXPLORER_MARK = "widgets.explore("  # the source of an explorer cell (notebook 02)
RUN_TIMEOUT_S = 600  # one notebook's Run All in smoke mode takes 7-25 s on the 2-core reference machine
REDRAW_TIMEOUT_S = 90

# Console errors that are not the kit's: each one is matched narrowly (message, and where it came from) and says why
# it is harmless. Anything else logged as an error, and any uncaught exception, fails the test.
BENIGN = [
    # The machine (like an offline workshop room) has no internet: the Colab and Binder badge images in every
    # notebook's first cell and RISE's Google-font stylesheets cannot load. Only requests to other hosts than the
    # test's own server are excused.
    ("offline: external resource", re.compile(r"^Failed to load resource: net::ERR_"), "external"),
    # RISE asks for an optional per-notebook stylesheet <notebook>.css next to the notebook (the kit ships one
    # rise.css for all of them); the 404 and the refused text/html "stylesheet" are RISE probing for it.
    ("RISE: optional <notebook>.css absent",
     re.compile(r"(status of 404|Refused to apply style from '[^']*/files/[^']*/\d\d_[^/']*\.css')"), "notebook-css"),
    # jupyterlab-rise's slideshow app is built against JupyterLab 4.3 and lacks @jupyterlab/console, so the
    # ipywidgets manager cannot load there (jupyterlab-contrib/rise issue 119, open). The kit's explorer carries a
    # static figure for exactly this case; the slide checks below verify that it is shown instead.
    ("RISE: widget manager cannot load (rise#119)",
     re.compile(r"Shared module @jupyterlab/console doesn't exist in shared scope default"), "rise"),
    # RISE's bundled design-token code (@jupyter/web-components 0.13, built against an older JupyterLab) recurses
    # when JupyterLab 4.6's theme variables change; it only logs, the slides render.
    ("RISE: web-components design-token recursion", re.compile(r"Maximum call stack size exceeded"), "rise-bundle"),
]


def _is_local(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") or not url.startswith(("http:", "https:"))


def benign_reason(text: str, location: str, page_kind: str) -> str | None:
    for reason, pattern, where in BENIGN:
        if not pattern.search(text):
            continue
        if where == "external" and location and not _is_local(location):
            return reason
        if where == "notebook-css" and ("Refused to apply style" in text
                                        or re.search(r"/files/(.*/)?\d\d_[^/]*\.css$", location or "")):
            return reason
        if where == "rise" and page_kind == "rise":
            return reason
        if where == "rise-bundle" and page_kind == "rise" and "/static/rise/" in (location or ""):
            return reason
    return None


# --------------------------------------------------------------------------------------------------- environment


def find_chromium() -> str | None:
    forced = os.environ.get("COD_CHROMIUM")
    if forced:
        return forced if os.access(forced, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def status() -> tuple[bool, str]:
    """(can run, one line saying why or why not)."""
    chromium = find_chromium()
    if not chromium:
        how = "apt-get install chromium" if shutil.which("apt-get") else "install Chromium or Chrome"
        hint = " (or set COD_CHROMIUM=/path/to/chrome)" if not os.environ.get("COD_CHROMIUM") else \
            f" (COD_CHROMIUM={os.environ['COD_CHROMIUM']} is not an executable)"
        return False, f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH){hint}; {how}, then `make browser-test`"
    try:
        import jupyterlab  # noqa: F401
        import jupyterlab_rise  # noqa: F401
    except ImportError as exc:
        return False, f"JupyterLab or RISE missing in this environment ({exc.name}): pip install -e '.[lab]'"
    return True, f"Chromium at {chromium}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Lab:
    """JupyterLab serving a temporary copy of notebooks/, started from this Python (the kit's venv)."""

    def __init__(self, work: Path, notebooks: list[Path]):
        self.work = work
        self.root = work / "root"
        (self.root / "notebooks").mkdir(parents=True)
        for nb in notebooks:
            shutil.copy2(nb, self.root / "notebooks" / nb.name)
        for extra in NB_DIR.glob("*.css"):  # rise.css: RISE loads it from the notebook's folder
            shutil.copy2(extra, self.root / "notebooks" / extra.name)
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> None:
        env = dict(os.environ)
        env.pop("COD_WIDGETS", None)  # the explorer must find the real front end by itself
        env.update({
            "COD_MODE": "smoke",  # every notebook in seconds
            "HF_HUB_OFFLINE": "1",
            # the user's own Jupyter config, lab settings, workspaces, kernels and trust database stay out of it:
            # the server sees the kit's venv only (its share/jupyter holds the kernel and overrides.json)
            "JUPYTER_CONFIG_DIR": str(self.work / "config"),
            "JUPYTER_DATA_DIR": str(self.work / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.work / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(self.work / "user-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.work / "workspaces"),
        })
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: run commands as the menus do
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

    def api(self, method: str, path: str):
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        for s in self.api("GET", "/api/sessions") or []:
            self.api("DELETE", f"/api/sessions/{s['id']}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the kernels it started (its session)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if getattr(self, "log", None):
            self.log.close()


# -------------------------------------------------------------------------------------------------------- pages


@dataclass
class Result:
    name: str
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    slides: list[dict] = field(default_factory=list)
    explorer: list[dict] = field(default_factory=list)

    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        print(f"    FAIL {msg}", flush=True)

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        print(f"    note {msg}", flush=True)


class Console:
    """Collects a page's console errors and uncaught exceptions, minus the known-benign ones."""

    def __init__(self, page, kind: str):
        self.kind = kind
        self.errors: list[str] = []
        self.excused: dict[str, int] = {}
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)

    def _keep(self, text: str, location: str) -> None:
        reason = benign_reason(text, location, self.kind)
        if reason:
            self.excused[reason] = self.excused.get(reason, 0) + 1
        else:
            self.errors.append(f"{text[:400]} (at {location or '?'})")

    def _on_console(self, msg) -> None:
        if msg.type == "error":
            self._keep(msg.text, (msg.location or {}).get("url", ""))

    def _on_pageerror(self, exc) -> None:
        stack = getattr(exc, "stack", "") or ""
        m = re.search(r"\((https?://[^)]+?):\d+:\d+\)", stack)
        self._keep(f"uncaught {exc}", m.group(1) if m else "")

    def report(self, res: Result, where: str) -> None:
        for e in self.errors:
            res.fail(f"{where}: console error: {e}")
        self.errors.clear()


JS_CURRENT = "window.jupyterapp && window.jupyterapp.shell.currentWidget"

JS_READY = """(path) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.context || w.context.path !== path || !w.context.isReady || !w.sessionContext) return false;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle'; }"""

JS_RUN_STATE = """() => { const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const pending = cells.filter(c => (c.promptNode && c.promptNode.textContent || '').includes('*')).length;
  return {status: k ? k.status : 'none', pending: pending,
          bars: w.node.querySelectorAll('.widget-hprogress, .widget-progress').length}; }"""

JS_CELLS = """() => { const w = window.jupyterapp.shell.currentWidget;
  return w.content.widgets.map((c, i) => {
    const src = c.model.sharedModel.getSource();
    if (c.model.type !== 'code') return {i: i, type: c.model.type, src: src.slice(0, 200)};
    const outs = c.model.outputs.toJSON().map(o => {
      const d = o.data || {};
      return {type: o.output_type, name: o.name || null, mimes: Object.keys(d),
              text: o.text ? [].concat(o.text).join('') : (d['text/plain'] ? [].concat(d['text/plain']).join('') : ''),
              ename: o.ename || null, evalue: o.evalue || null}; });
    // textContent, not innerText: JupyterLab skips rendering off-screen cells (content-visibility), and
    // innerText of a skipped cell is empty
    const dom = Array.from(c.node.querySelectorAll('.jp-OutputArea-output')).map(n => n.textContent || '');
    return {i: i, type: 'code', src: src, count: c.model.executionCount, outputs: outs, dom: dom,
            widgets: c.node.querySelectorAll('.jupyter-widgets.widget-container, .jupyter-widgets.widget-inline-hbox').length};
  }); }"""

WIDGET_REPR = re.compile(r"\b(VBox|HBox|Box|IntSlider|FloatSlider|Dropdown|FloatProgress|IntProgress|Output|Button|"
                         r"Checkbox|Tab|Accordion|HTML|Label)\((children|value|layout|description|outputs)=")
# tqdm's text bar short of 100%: "removing each layer:   0%|          | 0/435" (a finished bar, "100%|", is fine)
FROZEN_BAR = re.compile(r"(?<!\d)\d{1,2}%\|")
ECHOED_CLAIM = re.compile(r"""^(['"])(CLAIM HOLDS|MEASURED): """)


def run_cmd(page, command: str, wait: bool = True) -> None:
    """Run a JupyterLab command as its menu item does; ``wait=False`` returns at once (Run All's promise only
    settles when the last cell has run)."""
    if wait:
        page.evaluate("(c) => window.jupyterapp.commands.execute(c)", command)
    else:
        page.evaluate("(c) => { window.jupyterapp.commands.execute(c); }", command)


def wait_run_all(page, timeout_s: float) -> tuple[float, int]:
    """Run All; returns its wall time and the most live progress-bar widgets seen at once while it ran."""
    t0 = time.monotonic()
    run_cmd(page, "notebook:run-all-cells", wait=False)
    stable, bars = 0, 0
    while time.monotonic() - t0 < timeout_s:
        time.sleep(0.25)
        st = page.evaluate(JS_RUN_STATE)
        bars = max(bars, st["bars"])
        stable = stable + 1 if (st["status"] == "idle" and st["pending"] == 0) else 0
        if stable >= 6:  # idle with nothing queued for 1.5 s
            return time.monotonic() - t0, bars
    raise TimeoutError(f"Run All did not finish within {timeout_s:.0f} s")


def check_cells(cells: list[dict], res: Result) -> None:
    for c in cells:
        if c["type"] != "code":
            continue
        i, head = c["i"], (c["src"].strip().splitlines() or [""])[0][:60]
        where = f"cell {i} ({head!r})"
        if c["count"] is None:
            res.fail(f"{where} did not run (Run All stopped before it)")
        for o in c["outputs"]:
            if o["type"] == "error":
                res.fail(f"{where} raised {o['ename']}: {o['evalue']}")
            if o["type"] == "stream" and o["name"] == "stderr":
                res.note(f"{where} wrote to stderr: {o['text'].strip()[:200]!r}")
            if o["type"] == "execute_result" and ECHOED_CLAIM.match(o["text"].strip()):
                res.fail(f"{where} echoes its claim line as Out[] (a second copy): {o['text'][:80]}")
            if "application/vnd.jupyter.widget-view+json" in o["mimes"] and EXPLORER_MARK not in c["src"]:
                res.fail(f"{where} leaves a widget in its outputs ({o['text'][:60]!r}): gone with the kernel")
        for text in c["dom"]:
            for pat, what in ((r"Error displaying widget", "a widget failed to render"),
                              (r"^Loading widget\.\.\.", "a widget never finished loading")):
                if re.search(pat, text, re.M):
                    res.fail(f"{where}: {what}: {text.strip()[:120]!r}")
            if WIDGET_REPR.search(text):
                res.fail(f"{where} shows a widget's text repr instead of the widget: {text.strip()[:120]!r}")
            if FROZEN_BAR.search(text):
                res.fail(f"{where} shows a text progress bar: {text.strip()[:120]!r}")


def screenshot_notebook(page, path: Path, max_height: int = 16000) -> None:
    """The whole notebook in one tall image (the viewport grows to the notebook's height, then shrinks back)."""
    js_outer = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')"
    # leave the last cell (JupyterLab would scroll back to it), then scroll to the top
    page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
    page.evaluate(f"() => {{ const o = {js_outer}; if (o) o.scrollTop = 0; }}")
    js_bottom = f"""() => {{ const o = {js_outer}; if (!o) return 0; const cells = o.querySelectorAll('.jp-Cell');
      const last = cells.length ? cells[cells.length - 1].getBoundingClientRect().bottom : 0;
      return last + o.scrollTop; }}"""
    for _ in range(3):  # the height grows as the enlarged viewport renders more cells
        h = page.evaluate(js_bottom)
        page.set_viewport_size({"width": VIEWPORT["width"],
                                "height": int(min(max(h + 160, VIEWPORT["height"]), max_height))})
        time.sleep(0.7)
        page.evaluate(f"() => {{ const o = {js_outer}; if (o) o.scrollTop = 0; }}")
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)
    time.sleep(0.3)


def explorer_check(page, res: Result, out: Path) -> None:
    """Move every control of the explorer; each must change the figure (its image bytes)."""
    cell = page.locator(".jp-CodeCell", has=page.locator(".widget-vbox")).filter(has_text="explore(").first
    if cell.count() == 0:
        res.fail("explorer: no live widget panel found after Run All (is the kernel's front-end detection wrong?)")
        return
    panel = cell.locator(".widget-vbox").first
    panel.scroll_into_view_if_needed()
    img = panel.locator(".widget-output img").first
    img.wait_for(timeout=30000)
    controls = panel.locator(".widget-slider, .widget-dropdown")
    n = controls.count()
    if n == 0:
        res.fail("explorer: the panel has no controls")
        return
    js_src = "p => { const i = p.querySelector('.widget-output img'); return i && i.complete ? i.src : null; }"
    for k in range(n):
        ctl = controls.nth(k)
        name = ctl.locator(".widget-label").first.inner_text().strip()
        before = panel.evaluate(js_src)
        if "widget-dropdown" in (ctl.get_attribute("class") or ""):
            sel = ctl.locator("select")
            options = sel.locator("option").all_inner_texts()
            old = sel.input_value()
            new = next(o for o in options if o != old)
            t0 = time.monotonic()
            sel.select_option(new)
        else:
            handle = ctl.locator(".noUi-handle").first
            old = handle.get_attribute("aria-valuenow")
            at_max = float(old) >= float(handle.get_attribute("aria-valuemax"))
            handle.focus()
            t0 = time.monotonic()
            page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
            time.sleep(0.2)
            new = handle.get_attribute("aria-valuenow")
        # the Output widget replaces its <img> on every redraw: look it up afresh each time
        while time.monotonic() - t0 < REDRAW_TIMEOUT_S:
            now = panel.evaluate(js_src)
            if now and now != before:
                dt = time.monotonic() - t0
                res.explorer.append({"control": name, "from": old, "to": new, "redraw_s": round(dt, 2),
                                     "png_bytes": len(now) * 3 // 4})
                print(f"    explorer: {name} {old} -> {new}: figure redrawn in {dt:.1f} s", flush=True)
                break
            time.sleep(0.1)
        else:
            res.fail(f"explorer: moving {name} ({old} -> {new}) did not change the figure within {REDRAW_TIMEOUT_S} s")
        errors = panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        if errors.count():
            res.fail(f"explorer: after moving {name}: {errors.first.inner_text()[:200]!r}")
    panel.screenshot(path=str(out / f"{res.name[:2]}_explorer.png"))


def check_menu_paths(page, res: Result) -> None:
    """Every *View → ... * path the notebooks and the instructor guide name exists in JupyterLab's menus."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(NB_DIR.glob("*.ipynb")) + [NB_DIR / "INSTRUCTORS.md"]]
    paths = sorted({m.group(1) for t in texts for m in re.finditer(r"\*(View(?: → [A-Z][A-Za-z ]+)+)\*", t)})
    for path in paths:
        labels = path.split(" → ")
        ok = True
        try:
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{labels[0]}$")).first.click()
            for label in labels[1:]:
                item = page.locator(".lm-Menu:visible .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$"))
                item.first.wait_for(timeout=5000)
                item.first.hover()
                time.sleep(0.4)
        except Exception:  # noqa: BLE001
            ok = False
        page.keyboard.press("Escape")
        page.keyboard.press("Escape")
        if ok:
            print(f"    menu path exists: {path}", flush=True)
        else:
            res.fail(f"the notebooks name the menu path '{path}', which JupyterLab does not have")


JS_SLIDE = """() => {
  const all = Array.from(document.querySelectorAll('.reveal .slides section.present'));
  const s = all[all.length - 1];
  if (!s) return null;
  const r = s.getBoundingClientRect(), cs = getComputedStyle(s);
  const cells = s.querySelectorAll('.jp-Cell');
  const imgs = Array.from(s.querySelectorAll('.jp-OutputArea-output img')).map(i => Math.round(i.getBoundingClientRect().height));
  return {id: s.id, top: r.top, bottom: r.bottom, height: r.height, scrollHeight: s.scrollHeight,
          clientHeight: s.clientHeight, scrollWidth: s.scrollWidth, clientWidth: s.clientWidth,
          overflowY: cs.overflowY, cells: cells.length, imgs: imgs,
          fragments: document.querySelectorAll('.reveal .fragment.visible').length,
          viewport: window.innerHeight, text: (s.innerText || '').slice(0, 80)};
}"""

JS_SCROLL_END = """() => {
  const all = Array.from(document.querySelectorAll('.reveal .slides section.present'));
  const s = all[all.length - 1];
  s.scrollTop = s.scrollHeight;
  return new Promise(ok => setTimeout(() => {
    const cells = s.querySelectorAll('.jp-Cell');
    const last = cells.length ? cells[cells.length - 1].getBoundingClientRect() : s.getBoundingClientRect();
    const r = s.getBoundingClientRect();
    ok({atEnd: s.scrollTop + s.clientHeight >= s.scrollHeight - 2, lastBottom: last.bottom, bottom: r.bottom,
        viewport: window.innerHeight});
  }, 300));
}"""


def settled(page, timeout_s: float = 5.0) -> dict | None:
    """The present slide's geometry once it stops moving (reveal's transition, late images, MathJax)."""
    last, t0 = None, time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        st = page.evaluate(JS_SLIDE)
        key = st and (st["id"], round(st["top"]), round(st["height"]), st["scrollHeight"], tuple(st["imgs"]))
        if key is not None and key == last:
            return st
        last = key
        time.sleep(0.15)
    return st


def expected_slides(nb: dict) -> int:
    kinds = [c.get("metadata", {}).get("slideshow", {}).get("slide_type", "-") for c in nb["cells"]]
    kinds = [k for k in kinds if k not in ("skip", "notes")]
    return sum(1 for j, k in enumerate(kinds) if k in ("slide", "subslide") or j == 0)


def slides_check(ctx, lab: Lab, rel: str, nb: dict, res: Result, out: Path) -> None:
    page = ctx.new_page()
    console = Console(page, "rise")
    t0 = time.monotonic()
    page.goto(f"{lab.base}/rise/{rel}?token={lab.token}")
    page.wait_for_selector(".reveal .slides section.present .jp-Cell", timeout=120000)
    time.sleep(3)  # RISE typesets math and re-syncs reveal after the outputs render
    res.timings["rise_open_s"] = round(time.monotonic() - t0, 1)
    stem = res.name[:2]
    visited, tallest, last_state = [], None, None
    for _ in range(400):
        st = settled(page)
        if st is None:
            res.fail("RISE: no slide is shown")
            break
        state = (st["id"], st["fragments"])
        if state == last_state:
            break  # the last press changed nothing: end of the deck
        last_state = state
        if not visited or visited[-1]["id"] != st["id"]:
            k = len(visited)
            label = f"slide {k + 1} ({st['text'].strip().splitlines()[0][:50] if st['text'].strip() else st['id']!r})"
            entry = {"id": st["id"], "height": round(st["scrollHeight"]), "scrolls": False}
            vh = st["viewport"]
            scrollable = st["overflowY"] in ("scroll", "auto") and st["scrollHeight"] > st["clientHeight"] + 1
            if st["top"] < -1 or st["bottom"] > vh + 1:
                res.fail(f"RISE {label}: its box runs from {st['top']:.0f} to {st['bottom']:.0f} px, outside the "
                         f"{vh} px screen")
            if st["scrollHeight"] > st["clientHeight"] + 1 and not scrollable:
                res.fail(f"RISE {label}: {st['scrollHeight']} px of content in {st['clientHeight']} px, cut and "
                         f"not scrollable")
            if scrollable:
                entry["scrolls"] = True
                end = page.evaluate(JS_SCROLL_END)
                if not end["atEnd"] or end["lastBottom"] > min(end["bottom"], end["viewport"]) + 1:
                    res.fail(f"RISE {label}: scrolling does not bring its last cell into view ({end})")
                page.evaluate("""() => { const a = Array.from(document.querySelectorAll('.reveal .slides section.present'));
                                  a[a.length - 1].scrollTop = 0; }""")
            room = min(st["clientHeight"], vh)
            for h in st["imgs"]:
                if h > room + 1:
                    res.fail(f"RISE {label}: a figure is {h} px tall, more than the {room} px a slide shows")
            if st["scrollWidth"] > st["clientWidth"] + 2:
                res.fail(f"RISE {label}: content {st['scrollWidth']} px wide in {st['clientWidth']} px (cut at the right)")
            visited.append(entry)
            if k == 0:
                page.screenshot(path=str(out / f"{stem}_slide_first.png"))
            if tallest is None or entry["height"] > tallest[1]:
                tallest = (k, entry["height"])
                page.screenshot(path=str(out / f"{stem}_slide_tallest.png"))
        page.keyboard.press("Space")
        time.sleep(0.3)
    res.slides = visited
    want = expected_slides(nb)
    if len(visited) != want:
        res.fail(f"RISE: stepped through {len(visited)} slides, the slide metadata makes {want}")
    n_scroll = sum(s["scrolls"] for s in visited)
    print(f"    slides: {len(visited)} at {VIEWPORT['width']}x{VIEWPORT['height']}, {len(visited) - n_scroll} fit, "
          f"{n_scroll} scroll to their end; tallest {tallest[1] if tallest else 0} px (slide {tallest[0] + 1 if tallest else 0})",
          flush=True)
    # the explorer in slide mode: the static three-preset figure, never the widget's repr
    exp = page.locator(".jp-CodeCell").filter(has_text=EXPLORER_MARK)
    if exp.count():
        outs = exp.first.locator(".jp-OutputArea-output")
        mimes = [outs.nth(j).get_attribute("data-mime-type") for j in range(outs.count())]
        texts = outs.all_inner_texts()
        if "image/png" not in mimes:
            res.fail(f"RISE: the explorer's slide shows no static figure (outputs: {mimes})")
        for t in texts:
            if WIDGET_REPR.search(t) or "Error displaying widget" in t:
                res.fail(f"RISE: the explorer's slide shows {t.strip()[:80]!r}")
        res.note(f"RISE: the explorer's slide shows {'the static figure' if 'image/png' in mimes else mimes}")
    console.report(res, "RISE")
    if console.excused:
        res.timings["rise_excused_console"] = console.excused
    page.close()


def explorer_slide_screenshot(ctx, lab: Lab, rel: str, out: Path, stem: str) -> None:
    """Go to the explorer's slide in RISE (by the slide's position) and take its picture, scrolled to the figure."""
    page = ctx.new_page()
    page.goto(f"{lab.base}/rise/{rel}?token={lab.token}")
    page.wait_for_selector(".reveal .slides section.present .jp-Cell", timeout=120000)
    time.sleep(2)
    for _ in range(200):
        found = page.evaluate("""() => { const a = Array.from(document.querySelectorAll('.reveal .slides section.present'));
            const s = a[a.length - 1]; return (s.innerText || '').includes('widgets.explore('); }""")
        if found:
            break
        page.keyboard.press("Space")
        time.sleep(0.4)
    page.evaluate("""() => { const a = Array.from(document.querySelectorAll('.reveal .slides section.present'));
        const s = a[a.length - 1]; const c = Array.from(s.querySelectorAll('.jp-CodeCell')).find(
          e => (e.innerText || '').includes('widgets.explore('));
        if (c) { const o = c.querySelector('.jp-OutputArea'); (o || c).scrollIntoView({block: 'start'}); } }""")
    time.sleep(0.8)
    page.screenshot(path=str(out / f"{stem}_slide_explorer.png"))
    page.close()


def check_notebook(ctx, lab: Lab, nb_path: Path, out: Path, args, first: bool) -> Result:
    res = Result(nb_path.name)
    rel = f"notebooks/{nb_path.name}"
    served = lab.root / rel
    original = nb_path.read_bytes()
    page = ctx.new_page()
    console = Console(page, "lab")
    t0 = time.monotonic()
    page.goto(f"{lab.base}/lab/tree/{rel}?token={lab.token}&reset")
    page.wait_for_function(JS_READY, arg=rel, timeout=180000, polling=250)
    res.timings["open_s"] = round(time.monotonic() - t0, 1)
    run_cmd(page, "application:toggle-left-area")  # more notebook in the screenshots
    # 1. opening must not dirty the notebook, and saving it must rewrite the committed bytes
    if page.evaluate(f"{JS_CURRENT}.context.model.dirty"):
        res.fail("opening the notebook marks it modified (the stored kernelspec differs from the running kernel's?)")
    page.evaluate(f"{JS_CURRENT}.context.save()")
    if served.read_bytes() != original:
        before, after = json.loads(original), json.loads(served.read_bytes())
        diff = [k for k in sorted(set(before["metadata"]) | set(after["metadata"]))
                if before["metadata"].get(k) != after["metadata"].get(k)]
        res.fail(f"saving the unchanged notebook changes it (metadata keys that differ: {diff or 'none: cells/layout'})")
    if first:
        time.sleep(3)  # JupyterLab asks about news a moment after start, when it asks at all
        if page.locator("text=official Jupyter news").count():
            res.fail("JupyterLab's news pop-up is shown (config/jupyterlab/overrides.json not installed?)")
        check_menu_paths(page, res)
    # 2. Run All
    try:
        wall, bars = wait_run_all(page, args.run_timeout)
        res.timings["run_all_s"] = round(wall, 1)
        res.timings["live_progress_bars_seen"] = bars
        print(f"    Run All: {wall:.1f} s" + (f" (live progress bars seen: {bars})" if bars else ""), flush=True)
    except TimeoutError as exc:
        res.fail(str(exc))
    time.sleep(1.0)  # late widget renders
    cells = page.evaluate(JS_CELLS)
    check_cells(cells, res)
    left = page.evaluate(f"{JS_CURRENT}.node.querySelectorAll('.widget-hprogress, .widget-progress').length")
    if left:
        res.fail(f"{left} progress-bar widget(s) still shown after Run All")
    explorer = [c for c in cells if c["type"] == "code" and EXPLORER_MARK in c["src"]]
    for c in explorer:
        views = [o for o in c["outputs"] if "application/vnd.jupyter.widget-view+json" in o["mimes"]]
        if not views or not c["widgets"]:
            res.fail(f"explorer (cell {c['i']}): no live widget panel in JupyterLab (outputs: {[o['mimes'] for o in c['outputs']]})")
        elif "image/png" not in views[0]["mimes"] or "notebook view" not in views[0]["text"]:
            res.fail(f"explorer (cell {c['i']}): its output has no static stand-in for front ends without widgets")
    screenshot_notebook(page, out / f"{nb_path.stem[:2]}_notebook.png")
    # 3. the explorer's controls
    if explorer and not args.no_explorer:
        explorer_check(page, res, out)
    console.report(res, "JupyterLab")
    if console.excused:
        res.timings["lab_excused_console"] = console.excused
    # 4. save (RISE's button does), then the slideshow
    page.evaluate(f"{JS_CURRENT}.context.save()")
    saved = json.loads(served.read_bytes())
    if saved["metadata"].get("kernelspec") != json.loads(original)["metadata"].get("kernelspec"):
        res.fail(f"saving rewrote the kernelspec: {saved['metadata'].get('kernelspec')}")
    if not args.no_slides:
        slides_check(ctx, lab, rel, saved, res, out)
        if explorer:
            explorer_slide_screenshot(ctx, lab, rel, out, nb_path.stem[:2])
    page.close()
    lab.shutdown_kernels()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="notebook numbers or names (default: all)")
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT, help="screenshots and report.json (default: build/browser)")
    ap.add_argument("--no-slides", action="store_true", help="skip the RISE slideshow checks")
    ap.add_argument("--no-explorer", action="store_true", help="skip moving the explorer's controls")
    ap.add_argument("--run-timeout", type=float, default=RUN_TIMEOUT_S, help="seconds for one notebook's Run All")
    ap.add_argument("--status", action="store_true", help="say whether the browser test can run here, then exit 0")
    args = ap.parse_args(argv)

    ok, why = status()
    if args.status:
        if ok:
            print(f"browser test: not part of `make test`; run `make browser-test` ({why}; 5-6 min on 2 cores)")
        else:
            print(f"browser test skipped: {why}")
        return 0
    if not ok:
        print(f"browser test cannot run: {why}", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser test cannot run: Playwright is missing: pip install -e '.[browser]' (make browser-test does)",
              file=sys.stderr)
        return 2

    notebooks = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if any(p.name.startswith(o) or p.stem == o for o in args.only)]
        if not notebooks:
            print(f"no notebook matches {args.only}", file=sys.stderr)
            return 2
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    before = {p: sha256(p) for p in notebooks}
    chromium = find_chromium()
    print(f"browser test: {len(notebooks)} notebook(s) in JupyterLab and RISE, Chromium {chromium}, "
          f"screenshots in {out}", flush=True)

    t_start = time.monotonic()
    results: list[Result] = []
    work = Path(tempfile.mkdtemp(prefix="cod-browser-"))
    lab = Lab(work, notebooks)
    try:
        lab.start()
        print(f"JupyterLab on 127.0.0.1:{lab.port} serving a copy in {lab.root} "
              f"(started in {time.monotonic() - t_start:.1f} s)", flush=True)
        with sync_playwright() as pw:
            launch_args = ["--disable-dev-shm-usage"]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                launch_args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=launch_args)
            ctx = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            for k, nb in enumerate(notebooks):
                print(f"  {nb.name}", flush=True)
                t0 = time.monotonic()
                try:
                    res = check_notebook(ctx, lab, nb, out, args, first=(k == 0))
                except Exception as exc:  # noqa: BLE001 - one broken notebook must not hide the others
                    res = Result(nb.name)
                    res.fail(f"the test itself failed: {type(exc).__name__}: {str(exc)[:500]}")
                    try:
                        lab.shutdown_kernels()
                    except Exception:  # noqa: BLE001
                        pass
                res.timings["total_s"] = round(time.monotonic() - t0, 1)
                print(f"    {'ok' if not res.failures else 'FAILED'} in {res.timings['total_s']:.0f} s", flush=True)
                results.append(res)
            browser.close()
    finally:
        lab.stop()
        log_copy = out / "jupyterlab.log"
        if lab.log_path.exists():
            shutil.copy2(lab.log_path, log_copy)
        shutil.rmtree(work, ignore_errors=True)

    changed = [p.name for p in notebooks if sha256(p) != before[p]]
    wall = time.monotonic() - t_start
    report = {"seconds": round(wall, 1), "viewport": VIEWPORT, "chromium": chromium,
              "committed_notebooks_changed": changed,
              "notebooks": [r.__dict__ for r in results]}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"\nscreenshots and report.json in {out}")
    failed = [r for r in results if r.failures]
    for r in failed:
        print(f"FAILED {r.name}:")
        for f in r.failures:
            print(f"  - {f}")
    if changed:
        print(f"FAILED: the committed notebooks changed: {changed}")
    print(f"browser test finished in {wall:.0f} s")
    n_fail = len(failed) + (1 if changed else 0)
    print(f"browser-test: {len(results) - len(failed)} passed, {n_fail} failed")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
