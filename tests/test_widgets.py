"""llmlab.widgets: the demos' pure parts, and each widget reacting to its controls in Python."""

import numpy as np
import pytest
import tiktoken
import torch

from llmlab.gpt import GPT, GPTConfig, sample_next, top_k_filter, top_p_filter
from llmlab.widgets import (
    CHARACTERS,
    UTF8_BYTES,
    attention_explorer,
    attention_figure,
    comparison_html,
    distribution_figure,
    sampling_explorer,
    sampling_probabilities,
    tokenizer_box,
)


def _counts(html: str) -> list[int]:
    marker = '<span class="llmlab-token-count">'
    return [int(part.split("<")[0]) for part in html.split(marker)[1:]]


def test_comparison_counts_tokens_of_every_encoding():
    enc = tiktoken.get_encoding("cl100k_base")
    text = "Hello world, 你好"
    html = comparison_html(text, {"characters": CHARACTERS, "bytes": UTF8_BYTES, "cl100k": enc})
    assert _counts(html) == [len(text), len(text.encode("utf-8")), len(enc.encode(text))]
    assert "‹" in html, "a byte that is part of a character shows as hex"
    assert "<b>cl100k</b>" in html


def test_comparison_escapes_the_text():
    html = comparison_html("<script>", {"characters": CHARACTERS})
    assert "<script>" not in html and "&lt;" in html


def test_tokenizer_box_updates_when_the_text_changes():
    demo = tokenizer_box({"characters": CHARACTERS}, "abc")
    box, shown = demo.widget.children
    assert _counts(shown.value) == [3]
    box.value = "abcdef"
    assert _counts(shown.value) == [6]
    bundle = demo._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert _counts(bundle["text/html"]) == [3], "the static copy shows the first state"


def test_sampling_probabilities_are_what_sample_next_draws_from():
    torch.manual_seed(0)
    logits = torch.randn(3, 40) * 3
    for t, k, p in [(1.0, None, None), (0.7, 5, None), (1.3, None, 0.8), (0.5, 10, 0.5)]:
        expected = logits / t
        if k is not None:
            expected = top_k_filter(expected, k)
        if p is not None:
            expected = top_p_filter(expected, p)
        probs = sampling_probabilities(logits, t, k, p)
        assert torch.allclose(probs, expected.softmax(-1))
        assert torch.allclose(probs.sum(-1), torch.ones(3))
        # every id sample_next draws has a positive probability here
        drawn = sample_next(logits, t, k, p, generator=torch.Generator().manual_seed(1))
        assert (probs.gather(1, drawn) > 0).all()
    greedy = sampling_probabilities(logits, 0.0)
    assert torch.equal(greedy.argmax(-1), logits.argmax(-1)) and torch.equal(greedy.sum(-1),
                                                                             torch.ones(3))
    with pytest.raises(ValueError):
        sampling_probabilities(logits, -1.0)


def test_sampling_explorer_redraws_on_every_slider():
    torch.manual_seed(0)
    logits = torch.randn(30)
    demo = sampling_explorer(lambda text: logits, lambda i: chr(97 + i % 26), "abc")
    _, sliders, image, note = demo.widget.children
    temperature, top_k, top_p = sliders.children
    first = image.value
    assert "30 of 30 tokens" in note.value
    top_k.value = 3
    assert "3 of 30 tokens" in note.value and image.value != first
    temperature.value = 0.0
    assert "1 of 30 tokens" in note.value and "100%" in note.value
    assert demo._repr_mimebundle_()["text/html"].startswith('<img src="data:image/png;base64,')


def test_figures_have_titles_and_axis_labels():
    fig = distribution_figure(torch.randn(12), str, 1.0, 3, None, "next token")
    ax = fig.axes[0]
    assert ax.get_title() == "next token" and ax.get_xlabel() and ax.get_ylabel()
    weights = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    fig = attention_figure(list("abcd"), weights, 2, "layer 0, head 1")
    heat, bars = fig.axes[:2]
    assert heat.get_title() == "layer 0, head 1" and heat.get_xlabel() and bars.get_ylabel()
    assert np.allclose([b.get_height() for b in bars.patches], weights[2])


def test_attention_explorer_picks_layer_head_and_query():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(n_layer=2, n_head=3, n_embd=12, block_size=16, vocab_size=26))

    def maps_for(text):
        if not text.isalpha() or not text.islower():
            raise ValueError("letters a-z only")
        ids = torch.tensor([[ord(c) - 97 for c in text]])
        with torch.no_grad():
            maps = gpt.attention_maps(ids)
        return list(text), [m[0].numpy() for m in maps]

    demo = attention_explorer(maps_for, "hello")
    row, head, query, image, note = demo.widget.children
    text_box, layer = row.children
    assert layer.options == (0, 1) and head.options == (0, 1, 2) and query.max == 4
    assert "query token 4 'o'" in note.value
    first = image.value
    layer.value, head.value, query.value = 1, 2, 1
    assert "layer 1, head 2: query token 1 'e'" in note.value and image.value != first
    text_box.value = "transformer"
    assert query.max == 10
    text_box.value = "Not OK!"
    assert "letters a-z only" in note.value
