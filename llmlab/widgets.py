"""Interactive demos for the lectures (ipywidgets), readable without a running kernel too.

- `tokenizer_box`: type a text, see its tokens coloured and counted under several encodings.
- `sampling_explorer`: temperature, top-k and top-p sliders over a model's next-token distribution.
- `attention_explorer`: pick a layer, a head and a query token of a model's attention.

Each function returns a `Demo`: displayed in a live notebook it is the widget; its output also
carries a static HTML copy of the first state, which viewers without a kernel show (GitHub,
nbviewer), so a saved notebook reads well there. The pure parts (`comparison_html`,
`sampling_probabilities`, `attention_figure`, `distribution_figure`) are plain functions.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from llmlab.gpt import top_k_filter, top_p_filter
from llmlab.tokenizer import TokenPiece, pieces_html, token_pieces

__all__ = [
    "CHARACTERS", "UTF8_BYTES", "Demo", "attention_explorer", "attention_figure",
    "comparison_html", "distribution_figure", "sampling_explorer", "sampling_probabilities",
    "tokenizer_box",
]


class Demo:
    """A widget and a static HTML copy of its first state, displayed as one output."""

    def __init__(self, widget, static_html: str) -> None:
        self.widget = widget
        self.static_html = static_html

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        # JupyterLab prefers the widget view; viewers that cannot show widgets take the HTML.
        bundle["text/html"] = self.static_html
        return bundle


# --- tokenizer box ------------------------------------------------------------------------------

def CHARACTERS(text: str) -> list[TokenPiece]:
    """Every character a token (its id is its Unicode code point)."""
    return [TokenPiece(ord(ch), ch.encode("utf-8"), ch) for ch in text]


def UTF8_BYTES(text: str) -> list[TokenPiece]:
    """Every UTF-8 byte a token (its id is the byte's value)."""
    out = []
    for b in text.encode("utf-8"):
        piece = bytes([b])
        out.append(TokenPiece(b, piece, piece.decode("utf-8") if b < 128 else None))
    return out


def _pieces(encoding, text: str) -> list[TokenPiece]:
    # An encoding is a function text -> pieces, or a RegexTokenizer / tiktoken Encoding.
    return encoding(text) if callable(encoding) else token_pieces(text, encoding, "none")


def comparison_html(text: str, encodings: Mapping[str, object]) -> str:
    """HTML with, for each named encoding, its token count and the coloured tokens of `text`."""
    rows = []
    for name, encoding in encodings.items():
        pieces = _pieces(encoding, text)
        rows.append(
            f'<div style="margin-top:6px"><b>{html.escape(name)}</b>: '
            f'<span class="llmlab-token-count">{len(pieces)}</span> tokens</div>'
            + pieces_html(pieces, len(text)))
    return '<div class="llmlab-token-comparison">' + "".join(rows) + "</div>"


def tokenizer_box(encodings: Mapping[str, object], text: str) -> Demo:
    """A text box; every edit shows the text's tokens under each of `encodings`.

    `encodings` maps a name to a `RegexTokenizer`, a `tiktoken.Encoding` or a function from text
    to `TokenPiece`s (such as `CHARACTERS` or `UTF8_BYTES`). Special tokens are ordinary text.
    """
    import ipywidgets as w

    box = w.Textarea(value=text, continuous_update=True, placeholder="type any text",
                     layout=w.Layout(width="100%", height="4.5em"))
    box.add_class("llmlab-tokenizer-box")
    shown = w.HTML(comparison_html(text, encodings))
    box.observe(lambda change: setattr(shown, "value", comparison_html(change["new"], encodings)),
                names="value")
    return Demo(w.VBox([box, shown]), comparison_html(text, encodings))


# --- figures as PNG -----------------------------------------------------------------------------

def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _img_html(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}"/>'
            f'<div style="color:#666;font-size:85%">{html.escape(caption)}</div>')


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    from llmlab.plots import use_chinese_font

    use_chinese_font()
    return Figure(figsize=(width, height), layout="constrained")


# --- sampling explorer --------------------------------------------------------------------------

def sampling_probabilities(logits: torch.Tensor, temperature: float, top_k: int | None = None,
                           top_p: float | None = None) -> torch.Tensor:
    """The distribution `llmlab.gpt.sample_next` draws from, for logits (V,) or (B, V).

    Temperature 0 is greedy: all probability on the most likely id. Otherwise the logits are
    divided by the temperature, filtered by top-k and then top-p, and turned into probabilities.
    """
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    if temperature == 0:
        return torch.zeros_like(logits).scatter(-1, logits.argmax(-1, keepdim=True), 1.0)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits.softmax(dim=-1)


def distribution_figure(logits: torch.Tensor, label: Callable[[int], str], temperature: float,
                        top_k: int | None, top_p: float | None, title: str, n_shown: int = 20):
    """Bars of the `n_shown` most likely next tokens: the model's probability (temperature 1,
    outlined) and the probability the sampler uses (filled; grey x = filtered out)."""
    model_probs = logits.softmax(-1)
    used = sampling_probabilities(logits, temperature, top_k, top_p)
    order = torch.argsort(model_probs, descending=True)[:n_shown].tolist()
    fig = _figure(9, 3.4)
    ax = fig.add_subplot()
    x = np.arange(len(order))
    ax.bar(x, used[order].numpy(), color="tab:blue", label="used for sampling")
    ax.bar(x, model_probs[order].numpy(), fill=False, edgecolor="black", linewidth=0.8,
           label="model (temperature 1, no filter)")
    removed = [i for i, t in enumerate(order) if used[t] == 0]
    ax.scatter(removed, [0.0] * len(removed), marker="x", color="grey", zorder=3,
               label="filtered out")
    ax.set_xticks(x, [label(t) for t in order])
    ax.set(title=title, xlabel=f"the {len(order)} most likely next tokens",
           ylabel="probability", ylim=(0, max(1e-9, float(used.max()), float(model_probs.max()))
                                       * 1.08))
    ax.legend(loc="upper right", fontsize=8)
    return fig


def sampling_explorer(next_logits: Callable[[str], torch.Tensor], label: Callable[[int], str],
                      prompt: str, temperature: float = 1.0, top_k: int = 0,
                      top_p: float = 1.0) -> Demo:
    """Sliders for temperature, top-k (0 = off) and top-p (1 = off) over the distribution of the
    token after `prompt`; `next_logits(text)` gives the model's logits (V,) for the next token,
    `label(id)` a short label for a token."""
    import ipywidgets as w

    def caption(logits, t, k, p):
        used = sampling_probabilities(logits, t, k or None, p if p < 1 else None)
        kept = int((used > 0).sum())
        best = int(used.argmax())
        return (f"temperature {t:g}, top-k {k or 'off'}, top-p {p if p < 1 else 'off'}: "
                f"{kept} of {len(used)} tokens can be drawn; the most likely, {label(best)!r}, "
                f"gets {float(used[best]):.0%}")

    def render(text, t, k, p):
        logits = next_logits(text)
        title = f"Next token after {text[-40:]!r}"
        fig = distribution_figure(logits, label, t, k or None, p if p < 1 else None, title)
        return _png(fig), caption(logits, t, k, p)

    text_box = w.Text(value=prompt, description="prompt", layout=w.Layout(width="60%"))
    t_slider = w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05,
                             description="temperature", continuous_update=False)
    k_slider = w.IntSlider(value=top_k, min=0, max=50, description="top-k (0 off)",
                           continuous_update=False)
    p_slider = w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05,
                             description="top-p (1 off)", continuous_update=False)
    png, text = render(prompt, temperature, top_k, top_p)
    image, note = w.Image(value=png, format="png"), w.HTML(html.escape(text, quote=False))

    def update(_=None):
        try:
            png, text = render(text_box.value, t_slider.value, k_slider.value, p_slider.value)
        except (KeyError, ValueError) as err:  # e.g. a character the model has never seen
            note.value = html.escape(f"cannot score this prompt: {err}")
            return
        image.value, note.value = png, html.escape(text, quote=False)

    for control in (text_box, t_slider, k_slider, p_slider):
        control.observe(update, names="value")
    widget = w.VBox([text_box, w.HBox([t_slider, k_slider, p_slider]), image, note])
    return Demo(widget, _img_html(png, text))


# --- attention explorer -------------------------------------------------------------------------

def attention_figure(labels: Sequence[str], weights: np.ndarray, query: int, title: str):
    """One head's attention (T, T) as a heatmap with row `query` outlined, beside a bar chart of
    that row: how much token `query` attends to every token."""
    from matplotlib.patches import Rectangle

    weights = np.asarray(weights, dtype=float)
    T = len(labels)
    fig = _figure(11, 4.2)
    fig.get_layout_engine().set(wspace=0.12)  # room between the colour bar and the bar chart
    heat, bars = fig.subplots(1, 2, width_ratios=[1, 1.3])
    image = heat.imshow(weights, cmap="viridis", vmin=0, vmax=1)
    heat.add_patch(Rectangle((-0.5, query - 0.5), T, 1, fill=False, edgecolor="red", linewidth=2))
    heat.set_xticks(range(T), labels, fontsize=8)
    heat.set_yticks(range(T), labels, fontsize=8)
    heat.set(title=title, xlabel="key: token attended to", ylabel="query: token attending")
    fig.colorbar(image, ax=heat, label="attention weight", shrink=0.8)
    bars.bar(range(T), weights[query], color=["tab:red" if i == query else "tab:blue"
                                              for i in range(T)])
    bars.set_xticks(range(T), labels, fontsize=8)
    bars.set(title=f"weights of query {query} ({labels[query]!r}); they sum to 1",
             xlabel="key: token attended to", ylabel="attention weight", ylim=(0, 1))
    return fig


def attention_explorer(maps_for: Callable[[str], tuple[list[str], list[np.ndarray]]],
                       text: str, layer: int = 0, head: int = 0, query: int | None = None
                       ) -> Demo:
    """Pick a layer, a head and a query token of a model's attention over a text you type.

    `maps_for(text)` returns the token labels and, per layer, the weights (H, T, T); it may raise
    `ValueError` for a text the model cannot take (the message is shown).
    """
    import ipywidgets as w

    labels, maps = maps_for(text)
    n_layer, n_head = len(maps), maps[0].shape[0]
    query = len(labels) - 1 if query is None else query

    def render(labels, maps, layer, head, query):
        title = f"layer {layer}, head {head}"
        fig = attention_figure(labels, maps[layer][head], query, title)
        return _png(fig), f"{title}: query token {query} {labels[query]!r} of {len(labels)}"

    text_box = w.Text(value=text, description="text", continuous_update=False)
    layer_pick = w.Dropdown(options=list(range(n_layer)), value=layer, description="layer")
    head_pick = w.ToggleButtons(options=list(range(n_head)), value=head, description="head")
    query_pick = w.IntSlider(value=query, min=0, max=len(labels) - 1, description="query token")
    png, caption = render(labels, maps, layer, head, query)
    image, note = w.Image(value=png, format="png"), w.HTML(html.escape(caption, quote=False))
    state = {"labels": labels, "maps": maps}

    def new_text(change):
        try:
            state["labels"], state["maps"] = maps_for(change["new"])
        except ValueError as err:
            note.value = html.escape(str(err))
            return
        query_pick.max = len(state["labels"]) - 1
        update()

    def update(_=None):
        png, caption = render(state["labels"], state["maps"], layer_pick.value, head_pick.value,
                              min(query_pick.value, len(state["labels"]) - 1))
        image.value, note.value = png, html.escape(caption, quote=False)

    text_box.observe(new_text, names="value")
    for control in (layer_pick, head_pick, query_pick):
        control.observe(update, names="value")
    widget = w.VBox([w.HBox([text_box, layer_pick]), head_pick, query_pick, image, note])
    return Demo(widget, _img_html(png, caption))
