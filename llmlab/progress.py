"""Progress bars that a saved notebook shows finished: `tqdm.auto`, with one change.

In a Jupyter kernel `tqdm.auto.tqdm` draws an ipywidgets bar. A notebook file stores that output
once, as it was displayed: the widget reference and a text copy of the bar at 0%. Viewers without
the live widget state (GitHub, nbviewer) show the text copy, a bar
frozen at 0%.

`tqdm` here is the same live widget bar, displayed with an IPython display id; when the bar closes
(a loop runs out, a `with` block ends, or `close()` is called) it updates that display, so the
stored text copy is the finished bar. A bar made with `leave=False` disappears from a live
notebook when it closes; here its place keeps the bar's final line of text. Outside a Jupyter
kernel (a terminal, a test) `tqdm` is `tqdm.auto.tqdm` itself, tqdm's ordinary text bar.

    from llmlab.progress import tqdm

    for step in tqdm(range(1000), desc="training"):
        ...
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.notebook import tqdm_notebook

__all__ = ["tqdm"]


class _SavedFinishedBar(_auto_tqdm):
    """tqdm.auto's widget bar, whose displayed output is updated to its final state on close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        delayed = kwargs.get("delay", 0) > 0
        kwargs["display"] = False  # displayed below, with a display id
        super().__init__(*args, **kwargs)
        self._handle = None
        if not self.disable and not delayed:
            from IPython.display import display

            self._handle = display(self.container, display_id=True)
            self.displayed = True

    def close(self) -> None:
        if self.disable:  # tqdm sets this when it closes: close only once
            return
        super().close()
        if self._handle is None:
            return
        # leave=False closed the widget: its place keeps only the final line of text
        data = dict(self.container._repr_mimebundle_() or {}) if self.leave else {}
        data["text/plain"] = self.container.__repr__(True)  # drawn with blocks, like the widget
        self._handle.update(data, raw=True)


#: `tqdm.auto.tqdm`, saved finished in a notebook file (see the module's docstring).
tqdm: Any = _SavedFinishedBar if issubclass(_auto_tqdm, tqdm_notebook) else _auto_tqdm
