"""Progress bars for the kit's long loops (layer scans, pruning, training, the GGUF conversion).

``progress_bar`` takes tqdm's arguments and picks the bar for where the code runs:

- In a terminal or a script: tqdm's text bar on stderr.
- In a notebook kernel a person is watching (``workshop.runtime.frontend_attached``: JupyterLab,
  Notebook, VS Code, Colab): tqdm's live widget bar, which on ``close()`` replaces itself with its
  final text line (``leave=True``) or with nothing (``leave=False``). So a saved notebook never
  keeps a widget that, once its kernel is gone, can only show a frozen "0%" (GitHub, nbviewer, RISE)
  or "Error displaying widget".
- In a kernel nobody watches (nbconvert, nbval, papermill): no bar, so committed outputs carry none.

The core imports this module inside the functions that draw a bar, never at import.
"""

from __future__ import annotations

import sys


def progress_bar(*args, **kwargs):
    """A ``tqdm`` bar suited to where the code runs (see the module docstring); same arguments as
    ``tqdm``."""
    from tqdm.std import tqdm

    if "ipykernel" not in sys.modules:  # not a notebook kernel: no need for the widgets module
        return tqdm(*args, **kwargs)
    from . import runtime

    if runtime.frontend_attached():
        return _live_bar_class()(*args, **kwargs)
    if runtime._in_kernel():
        kwargs["disable"] = True
    return tqdm(*args, **kwargs)


_LIVE_BAR = None


def _live_bar_class():
    global _LIVE_BAR
    if _LIVE_BAR is None:
        import IPython.display
        from tqdm.notebook import tqdm as notebook_tqdm

        class LiveBar(notebook_tqdm):
            """tqdm's notebook bar, shown under a display id so that ``close()`` can replace it."""

            def __init__(self, *args, **kwargs):
                self._handle = None
                kwargs["display"] = False  # tqdm's own display() has no id; show it ourselves below
                super().__init__(*args, **kwargs)
                if not self.disable:
                    self._handle = IPython.display.display(self.container, display_id=True)
                    self.displayed = True

            def close(self):
                if self.disable:
                    return
                final = str(self) if self.leave else None
                super().close()
                handle, self._handle = self._handle, None
                if handle is not None:
                    handle.update({"text/plain": final} if final else {}, raw=True)
                    self.container.close()

        _LIVE_BAR = LiveBar
    return _LIVE_BAR
