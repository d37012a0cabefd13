"""Unit tests of llmlab.tokenizer: BPE training, cl100k_base against tiktoken, the visualiser."""

import random

import pytest
import regex
import tiktoken

from llmlab.text import reference_text
from llmlab.tokenizer import (
    GPT4_SPLIT_PATTERN,
    RegexTokenizer,
    merge,
    most_frequent_pair,
    pair_counts,
    show_tokens,
    token_pieces,
    train_fast,
    train_simple,
)

TEXTS = [
    "",
    "hello world",
    "Hello, World! HELLO world?",
    "今天我很开心，因为天气很好。",
    "大语言模型（LLM）是一种神经网络。词元（token）是模型处理文本的基本单位。",
    "ｆｕｌｌ-width ＡＢＣ and 中英混合 mixed text 123",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 flags 🇨🇳🇬🇧 and ❤️",
    "def f(x):\n    return x ** 2  # square\n\n\n\tprint(f(3))\n",
    "   leading spaces, trailing spaces   ",
    "many\n\n\n\nnewlines\r\n\r\nand   \n  mixed \t\t whitespace\n   ",
    "I'm sure you're right, they'll've done it; it's John's. DON'T SHOUT, WE'LL 'VE",
    "'s 'S 'ſ 'K 'll'LL",
    "numbers 1 12 123 1234 12345678 3.14159 1,000,000 ٣٤٥ ①②",
    "Ünïcödé naïve café, Здравствуй мир, γειά σου κόσμε, مرحبا, नमस्ते",
    "<|endoftext|>The end.<|endoftext|> <|fim_prefix|>a<|fim_middle|>b<|fim_suffix|>",
    "<|endofprompt|><|endoftext|><|endoftext|>x",
    "almost special: <|endoftext| and <|unknown|> and <|endoftext|>",
    "\u200b\u00a0nbsp and zero width\ufeff",
    "x" * 300 + " " + "ab" * 100,
    "   ",
    "\n",
    " \n ",
]


@pytest.fixture(scope="module")
def cl100k():
    return tiktoken.get_encoding("cl100k_base")


@pytest.fixture(scope="module")
def gpt4(cl100k):
    return RegexTokenizer.from_tiktoken("cl100k_base")


def _random_texts(n, seed):
    """Random strings from an alphabet of troublemakers: spaces, newlines, quotes, CJK, emoji."""
    alphabet = list("aZq'sltve  \n\r\t0123!?.,-_()") + [
        "  ", "\n\n", "我", "很", "開", "🙂", "👍🏽", "é", "'S", "'LL", "’", "<|endoftext|>"]
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(n)]


# -- cl100k_base: the same ids as tiktoken --------------------------------------------------
def test_split_pattern_is_tiktokens(cl100k):
    assert GPT4_SPLIT_PATTERN == cl100k._pat_str
    assert regex.findall(GPT4_SPLIT_PATTERN, "I'm  here\n\n") == ["I", "'m", " ", " here", "\n\n"]


def test_ids_and_specials_are_tiktokens(gpt4, cl100k):
    assert gpt4.special_tokens == cl100k._special_tokens
    assert gpt4.n_vocab == cl100k.n_vocab
    assert {gpt4.vocab[i] for i in gpt4.byte_ids} == {bytes([b]) for b in range(256)}
    assert gpt4.byte_ids != list(range(256)), "cl100k's byte tokens are not in byte order"
    assert all(cl100k.decode_single_token_bytes(i) == b for i, b in gpt4.vocab.items())
    assert list(gpt4.merges.values()) == sorted(gpt4.merges.values())


@pytest.mark.parametrize("text", TEXTS)
def test_encode_equals_tiktoken(gpt4, cl100k, text):
    assert gpt4.encode_ordinary(text) == cl100k.encode_ordinary(text)
    assert gpt4.encode(text, allowed_special="all") == cl100k.encode(text, allowed_special="all")
    assert gpt4.encode(text, allowed_special="none") == cl100k.encode(text, disallowed_special=())
    assert gpt4.decode(gpt4.encode(text, allowed_special="all")) == text
    assert gpt4.decode(gpt4.encode_ordinary(text)) == text


def test_random_texts_equal_tiktoken(gpt4, cl100k):
    for text in _random_texts(300, seed=0):
        assert gpt4.encode_ordinary(text) == cl100k.encode_ordinary(text), repr(text)
        assert gpt4.encode(text, allowed_special="all") == \
            cl100k.encode(text, allowed_special="all"), repr(text)


def test_corpus_slice_equals_tiktoken(gpt4, cl100k):
    text = reference_text()[100_000:160_000]
    ids = gpt4.encode_ordinary(text)
    assert ids == cl100k.encode_ordinary(text)
    assert gpt4.decode(ids) == text


def test_allowed_special_modes(gpt4, cl100k):
    text = "a<|endoftext|>b<|fim_prefix|>c"
    with pytest.raises(ValueError, match="special token"):
        gpt4.encode(text)  # "none_raise" is the default, as in tiktoken
    with pytest.raises(ValueError):
        gpt4.encode(text, allowed_special="none_raise")
    assert gpt4.encode("no specials here") == cl100k.encode("no specials here")
    assert gpt4.encode(text, allowed_special="all") == cl100k.encode(text, allowed_special="all")
    eot = gpt4.special_tokens["<|endoftext|>"]
    assert gpt4.encode(text, allowed_special="all").count(eot) == 1
    assert eot not in gpt4.encode(text, allowed_special="none")
    only_eot = "x<|endoftext|>y"
    assert gpt4.encode(only_eot, allowed_special={"<|endoftext|>"}) == \
        cl100k.encode(only_eot, allowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError):  # a special token that the set does not allow
        gpt4.encode(text, allowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError):
        gpt4.encode("x", allowed_special={"<|not a special token|>"})
    with pytest.raises(ValueError):
        gpt4.encode("x", allowed_special="some")


def test_decode(gpt4, cl100k):
    ids = cl100k.encode("我")
    assert len(ids) >= 1 and gpt4.decode(ids) == "我"
    half = gpt4.encode("🙂")[:1]
    assert gpt4.decode(half) == "\ufffd", "partial UTF-8 decodes to the replacement character"
    assert gpt4.decode_bytes(half) == "🙂".encode()[: len(gpt4.vocab[half[0]])]
    with pytest.raises(ValueError):
        gpt4.decode([100256])  # one of the 16 unused ids below cl100k_base's 100277


def test_from_ranks_with_a_made_up_table():
    # bytes in reverse order, then the merges "ab" and "abc" (and an unused "zz")
    ranks = {bytes([b]): 255 - b for b in range(256)}
    ranks.update({b"ab": 256, b"abc": 257, b"zz": 258})
    tok = RegexTokenizer.from_ranks(ranks, GPT4_SPLIT_PATTERN, {"<|end|>": 300})
    a, b, c, d = (255 - ord(ch) for ch in "abcd")
    assert tok.merges == {(a, b): 256, (256, c): 257, (255 - ord("z"),) * 2: 258}
    assert tok.encode_ordinary("abcd") == [257, d]
    assert tok.encode_ordinary("abab c") == [256, 256, 255 - ord(" "), c]
    assert tok.encode("abc<|end|>", allowed_special="all") == [257, 300]
    with pytest.raises(ValueError):
        RegexTokenizer.from_ranks({b"a": 0}, GPT4_SPLIT_PATTERN)


# -- training ---------------------------------------------------------------------------------
def test_building_blocks():
    assert pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert pair_counts([7]) == {}
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]
    assert merge([5, 6, 5, 6, 7], (5, 6), 99) == [99, 99, 7]
    assert most_frequent_pair({(3, 1): 2, (1, 9): 2, (0, 5): 1}) == (1, 9)


def test_train_on_a_hand_checkable_text():
    # "aaabdaaabac": (a,a) occurs 4 times -> 256. Then (256,a) and (a,b) both occur twice:
    # the tie goes to the smaller pair (97, 98) -> 257. Then (256, 257) twice -> 258.
    a, b = ord("a"), ord("b")
    for fast in (True, False):
        tok = RegexTokenizer()
        tok.train("aaabdaaabac", vocab_size=259, fast=fast)
        assert tok.merges == {(a, a): 256, (a, b): 257, (256, 257): 258}
        assert tok.vocab[258] == b"aaab"
        assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, a, ord("c")]
        assert tok.decode(tok.encode("aaabdaaabac")) == "aaabdaaabac"


def test_merges_never_cross_chunks():
    merges = train_fast("ab ab ab a b", vocab_size=300)
    tok = RegexTokenizer()
    tok.merges = merges
    tok._rebuild()
    assert all(b" " not in tok.vocab[i][1:] for i in merges.values()), \
        "a space only ever starts a chunk"


def test_training_stops_when_no_pair_is_left():
    for trainer in (train_fast, train_simple):
        assert len(trainer("ab", vocab_size=1000)) == 1
        assert trainer("", vocab_size=300) == {}
        with pytest.raises(ValueError):
            trainer("abc", vocab_size=255)


def test_fast_trainer_learns_the_simple_merges():
    text = reference_text()[:20_000]
    assert list(train_fast(text, 600).items()) == list(train_simple(text, 600).items())
    for seed, text in enumerate(_random_texts(20, seed=1)):
        text = text * (1 + seed % 3) + "aaaa bbbb abab"
        assert list(train_fast(text, 290).items()) == list(train_simple(text, 290).items())


def test_ties_go_to_the_smallest_pair():
    # every pair occurs exactly once: each round must merge the smallest pair still present
    text = "dcba"
    d, c, b, a = map(ord, "dcba")
    for trainer in (train_fast, train_simple):
        assert list(trainer(text, 259)) == [(b, a), (c, 256), (d, 257)]


def test_trained_tokenizer_round_trips_and_compresses():
    train, other = reference_text()[:30_000], reference_text()[-5_000:]
    tok = RegexTokenizer()
    tok.train(train, vocab_size=512)
    assert len(tok.merges) == 256 and len(tok.vocab) == 512
    for text in (other, *TEXTS[:14]):
        assert tok.decode(tok.encode_ordinary(text)) == text
    assert len(tok.encode_ordinary(other)) < 0.6 * len(other.encode("utf-8"))
    tok.register_special_tokens({"<|endoftext|>": 512})
    assert tok.encode("hi<|endoftext|>", allowed_special="all")[-1] == 512
    with pytest.raises(ValueError):
        tok.register_special_tokens({"<|clash|>": 300})


# -- the visualiser ---------------------------------------------------------------------------
def test_token_pieces_and_show_tokens(gpt4, cl100k):
    text = "Hi 🙂 我很开心<|endoftext|>"
    pieces = token_pieces(text, gpt4)
    assert pieces == token_pieces(text, cl100k)
    assert [p.id for p in pieces] == cl100k.encode(text, allowed_special="all")
    assert b"".join(p.bytes for p in pieces) == text.encode("utf-8")
    assert any(p.text is None for p in pieces), "the emoji is split inside its UTF-8 bytes"
    html = show_tokens(text, gpt4).data
    assert html.count("<span") == len(pieces)
    assert f"{len(pieces)} tokens" in html
    assert "Hi" in html and "·" in html, "spaces are shown as middle dots"
    with pytest.raises(ValueError):
        token_pieces(text, gpt4, allowed_special="none_raise")
