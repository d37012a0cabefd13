"""Byte-level BPE tokenizers: train your own, or load OpenAI's cl100k_base and match tiktoken.

A text becomes tokens in three steps:

1. **Pre-tokenize**: a regular expression (`GPT4_SPLIT_PATTERN`, the one GPT-4's cl100k_base
   uses) cuts the text into chunks — words with their leading space, numbers of up to three
   digits, runs of punctuation, runs of whitespace. Merges never cross a chunk boundary.
2. **Bytes**: every chunk is encoded as UTF-8, and every byte becomes a base token.
3. **Merge**: byte-pair encoding (BPE) repeatedly merges the adjacent pair of tokens whose merge
   was learned earliest (the lowest new id), until no learned merge applies.

Training learns the merges: start from the 256 byte tokens, count how often every adjacent pair
occurs in the training text, give the most frequent pair a new id, replace it everywhere, repeat
until the vocabulary has the requested size. Ties between equally frequent pairs go to the
smallest pair `(id1, id2)`. `train_simple` recounts every pair after every merge, exactly as the
definition says; `train_fast` gives the same merges by updating only the counts a merge changes
and keeping the candidates in a heap.

    >>> tok = RegexTokenizer()
    >>> tok.train("low lower lowest", vocab_size=260)
    >>> tok.decode(tok.encode("lowest")) == "lowest"
    True
    >>> gpt4 = RegexTokenizer.from_tiktoken("cl100k_base")   # same ids as tiktoken

Special tokens (such as `<|endoftext|>`) are strings that map straight to one id and are never
split; `encode` only produces them when `allowed_special` allows it, like tiktoken.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Literal, NamedTuple

import regex

#: GPT-4's pre-tokenization pattern: the `_pat_str` of tiktoken's cl100k_base (a test checks it).
#: In order: English contractions ('s 't 're 've 'm 'll 'd, any case); a word with at most one
#: leading non-letter (usually the space); 1-3 digits; punctuation with an optional leading space
#: and trailing newlines; whitespace at the end of the text; whitespace up to a newline; whitespace
#: that is not followed by a non-space (so a word keeps one leading space); any other whitespace.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

#: GPT-2's pre-tokenization pattern (also used by many later byte-level BPE models): contractions
#: (lower case only), a run of letters / of digits / of other symbols with an optional leading
#: space, whitespace not followed by a non-space, any other whitespace.
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

#: `allowed_special` values of `RegexTokenizer.encode`.
AllowedSpecial = Literal["none_raise", "all", "none"] | set[str] | frozenset[str]

Pair = tuple[int, int]


# --------------------------------------------------------------------------------------------
# The pieces of BPE
# --------------------------------------------------------------------------------------------
def pair_counts(ids: Sequence[int], counts: dict[Pair, int] | None = None,
                weight: int = 1) -> dict[Pair, int]:
    """Count the adjacent pairs of `ids`: add `weight` per occurrence to `counts` (or a new dict).

    >>> pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:], strict=False):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right.

    Overlapping occurrences go to the leftmost: merging (1, 1) in [1, 1, 1] gives [new, 1].

    >>> merge([5, 6, 5, 6, 7], (5, 6), 99)
    [99, 99, 7]
    """
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def most_frequent_pair(counts: Mapping[Pair, int]) -> Pair:
    """The pair with the highest count; ties go to the smallest pair (id1, id2)."""
    return min(counts, key=lambda p: (-counts[p], p))


def chunk_counts(text: str, pattern: str = GPT4_SPLIT_PATTERN) -> Counter[bytes]:
    """How often each pre-tokenized chunk (as UTF-8 bytes) occurs in `text`."""
    return Counter(chunk.encode("utf-8") for chunk in regex.findall(pattern, text))


def _check_vocab_size(vocab_size: int) -> int:
    if int(vocab_size) != vocab_size or vocab_size < 256:
        raise ValueError(f"vocab_size must be an integer >= 256 (the bytes), got {vocab_size}")
    return int(vocab_size)


# --------------------------------------------------------------------------------------------
# Training: the definition, and the fast equivalent
# --------------------------------------------------------------------------------------------
def train_simple(text: str, vocab_size: int,
                 pattern: str = GPT4_SPLIT_PATTERN) -> dict[Pair, int]:
    """Learn BPE merges by the definition: recount every pair after every merge.

    Pre-tokenizes `text` with `pattern` and keeps each distinct chunk once, with its count as a
    weight (the counts are the same as over every occurrence, just cheaper). Each round counts all
    adjacent pairs, picks the most frequent (ties: the smallest pair), gives it id 256, 257, ...
    and replaces it in every chunk. Stops early if no chunk has two tokens left.
    Returns the merges in the order learned: {(id1, id2): new_id}.
    """
    vocab_size = _check_vocab_size(vocab_size)
    counts = chunk_counts(text, pattern)
    words = [list(chunk) for chunk in counts]
    weights = list(counts.values())
    merges: dict[Pair, int] = {}
    for new_id in range(256, vocab_size):
        stats: dict[Pair, int] = {}
        for word, weight in zip(words, weights, strict=True):
            pair_counts(word, stats, weight)
        if not stats:
            break
        pair = most_frequent_pair(stats)
        merges[pair] = new_id
        words = [merge(word, pair, new_id) for word in words]
    return merges


def train_fast(text: str, vocab_size: int, pattern: str = GPT4_SPLIT_PATTERN) -> dict[Pair, int]:
    """Learn exactly the merges of `train_simple`, updating counts instead of recounting them.

    Three ideas make it fast:
    - `pair_count` holds the count of every pair over all distinct chunks (weighted by how often
      the chunk occurs) and `where` the chunks that contain each pair, so a merge only revisits the
      chunks that contain the merged pair and changes only the counts of pairs in those chunks;
    - the candidates sit in a heap of (-count, pair): its top is the most frequent pair, ties to
      the smallest pair — the same choice as `most_frequent_pair`;
    - when a count changes, the new (-count, pair) is pushed and the old entry stays in the heap;
      an entry whose count no longer matches `pair_count` is stale and skipped when popped
      ("lazy invalidation"), which is cheaper than deleting from the middle of a heap.
    """
    vocab_size = _check_vocab_size(vocab_size)
    counts = chunk_counts(text, pattern)
    words = [list(chunk) for chunk in counts]
    weights = list(counts.values())
    pair_count: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for index, (word, weight) in enumerate(zip(words, weights, strict=True)):
        for pair in zip(word, word[1:], strict=False):
            pair_count[pair] = pair_count.get(pair, 0) + weight
            where.setdefault(pair, set()).add(index)
    heap = [(-count, pair) for pair, count in pair_count.items()]
    heapq.heapify(heap)

    merges: dict[Pair, int] = {}
    new_id = 256
    while new_id < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negative:
            continue  # stale: this pair's count changed after the entry was pushed
        merges[pair] = new_id
        changed: set[Pair] = set()
        for index in where.pop(pair):
            word, weight = words[index], weights[index]
            new_word = merge(word, pair, new_id)
            if len(new_word) == len(word):
                continue  # an earlier merge already removed the pair from this chunk
            for old in zip(word, word[1:], strict=False):
                pair_count[old] -= weight
                changed.add(old)
            for new in zip(new_word, new_word[1:], strict=False):
                pair_count[new] = pair_count.get(new, 0) + weight
                where.setdefault(new, set()).add(index)
                changed.add(new)
            words[index] = new_word
        for p in changed:
            count = pair_count[p]
            if count > 0:
                heapq.heappush(heap, (-count, p))
            else:
                del pair_count[p]
        pair_count.pop(pair, None)
        new_id += 1
    return merges


# --------------------------------------------------------------------------------------------
# The tokenizer
# --------------------------------------------------------------------------------------------
class RegexTokenizer:
    """Byte-level BPE with regex pre-tokenization and special tokens (GPT-2/GPT-4 style).

    Attributes:
        pattern: the pre-tokenization regex.
        merges: {(id1, id2): new_id} in the order learned; encoding applies the merge with the
            lowest new id first.
        byte_ids: the id of each of the 256 single bytes (identity for a trained tokenizer;
            cl100k_base numbers its byte tokens in another order); -1 for a byte the vocabulary
            lacks (such bytes are dropped when encoding, as Hugging Face's BPE does).
        isolate: an optional regex applied before `pattern`: each of its matches becomes a chunk
            of its own, and `pattern` splits the text between matches (SmolLM2 isolates every
            digit this way).
        vocab: {id: bytes} for every ordinary token.
        special_tokens: {string: id} for the special tokens.
    """

    def __init__(self, pattern: str = GPT4_SPLIT_PATTERN, isolate: str | None = None) -> None:
        self.pattern = pattern
        self._compiled = regex.compile(pattern)
        self.isolate = isolate
        self._isolate = regex.compile(isolate) if isolate else None
        self.merges: dict[Pair, int] = {}
        self.byte_ids: list[int] = list(range(256))
        self.special_tokens: dict[str, int] = {}
        self._rebuild()

    # -- building -----------------------------------------------------------------------------
    def train(self, text: str, vocab_size: int, fast: bool = True) -> None:
        """Learn `vocab_size - 256` merges from `text` (ties: the smallest pair; see module doc).

        `fast=False` uses the by-the-definition trainer; both learn the same merges.
        """
        trainer = train_fast if fast else train_simple
        self.merges = trainer(text, vocab_size, self.pattern)
        self.byte_ids = list(range(256))
        self._rebuild()

    def register_special_tokens(self, special_tokens: Mapping[str, int]) -> None:
        """Add special tokens {string: id}; their ids must not be ordinary token ids."""
        clash = [s for s, i in special_tokens.items() if i in self.vocab]
        if clash:
            raise ValueError(f"special tokens {clash} reuse ids of ordinary tokens")
        self.special_tokens.update(special_tokens)
        self._rebuild()

    @classmethod
    def from_ranks(cls, ranks: Mapping[bytes, int], pattern: str,
                   special_tokens: Mapping[str, int] | None = None) -> RegexTokenizer:
        """A tokenizer from a tiktoken-style rank table {token bytes: rank}; ids are the ranks.

        BPE with ranks merges, again and again, the adjacent pair whose concatenation has the
        lowest rank. The merges that do this are recovered from the table: the pair that forms a
        token is what that BPE makes of the token's own bytes using only lower ranks.
        """
        tok = cls(pattern)
        tok.byte_ids, tok.merges = _merges_from_ranks(ranks)
        tok.special_tokens = dict(special_tokens or {})
        tok._rebuild()
        return tok

    @classmethod
    def from_merges(cls, vocab: Mapping[bytes, int], merges: Sequence[tuple[bytes, bytes]],
                    pattern: str, special_tokens: Mapping[str, int] | None = None,
                    isolate: str | None = None) -> RegexTokenizer:
        """A tokenizer from a vocabulary {token bytes: id} and an ordered merge list, the way
        GPT-2 and Hugging Face store byte-level BPE (merges apply in list order).

        Encoding here applies the merge with the lowest new id first, so the list's order must
        agree with the new tokens' ids (it does when the ids were given in training order).
        """
        tok = cls(pattern, isolate)
        tok.byte_ids = [vocab.get(bytes([b]), -1) for b in range(256)]
        tok.merges = {}
        last = -1
        for a, b in merges:
            new_id = vocab[a + b]
            if new_id <= last:
                raise ValueError(f"merge {a!r} + {b!r} -> id {new_id} is out of id order")
            tok.merges[vocab[a], vocab[b]] = last = new_id
        tok.special_tokens = dict(special_tokens or {})
        tok._rebuild()
        return tok

    @classmethod
    def from_tiktoken(cls, encoding_name: str = "cl100k_base") -> RegexTokenizer:
        """The tokenizer of one of tiktoken's encodings: the same ids, pattern and special tokens.

        Needs the encoding file in tiktoken's cache (`make setup` puts cl100k_base there).
        The merges are recovered once per process (a second or two for cl100k_base).
        """
        pattern, byte_ids, merges, special_tokens = _tiktoken_tables(encoding_name)
        tok = cls(pattern)
        tok.byte_ids, tok.merges = list(byte_ids), dict(merges)
        tok.special_tokens = dict(special_tokens)
        tok._rebuild()
        return tok

    def _rebuild(self) -> None:
        """Recompute the derived tables after merges, bytes or special tokens changed."""
        self.vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(self.byte_ids)
                                        if i >= 0}
        for (a, b), new_id in self.merges.items():
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self.inverse_special_tokens = {i: s for s, i in self.special_tokens.items()}
        self._chunk_cache: dict[bytes, list[int]] = {}

    @property
    def n_vocab(self) -> int:
        """One more than the largest id, as tiktoken counts (cl100k_base leaves some ids unused)."""
        return max([*self.vocab, *self.special_tokens.values()]) + 1

    # -- encoding and decoding ----------------------------------------------------------------
    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """BPE on one chunk: merge the adjacent pair with the lowest merge id, leftmost first."""
        cached = self._chunk_cache.get(chunk)
        if cached is not None:
            return list(cached)
        byte_ids, merges = self.byte_ids, self.merges
        ids = [byte_ids[b] for b in chunk if byte_ids[b] >= 0]
        while len(ids) >= 2:
            best, at = None, -1
            for i in range(len(ids) - 1):
                rank = merges.get((ids[i], ids[i + 1]))
                if rank is not None and (best is None or rank < best):
                    best, at = rank, i
            if best is None:
                break
            ids[at : at + 2] = [best]
        if len(self._chunk_cache) < 200_000:
            self._chunk_cache[chunk] = ids
        return list(ids)

    def pre_tokenize(self, text: str) -> list[str]:
        """The chunks BPE works on: `isolate`'s matches alone, `pattern` between them."""
        if self._isolate is None:
            return self._compiled.findall(text)
        chunks: list[str] = []
        start = 0
        for found in self._isolate.finditer(text):
            chunks.extend(self._compiled.findall(text[start : found.start()]))
            chunks.append(found.group())
            start = found.end()
        chunks.extend(self._compiled.findall(text[start:]))
        return chunks

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of `text`, treating special-token strings as ordinary text."""
        ids: list[int] = []
        for chunk in self.pre_tokenize(text):
            ids.extend(self._encode_chunk(chunk.encode("utf-8")))
        return ids

    def encode(self, text: str, allowed_special: AllowedSpecial = "none_raise") -> list[int]:
        """Token ids of `text`, with special tokens handled as `allowed_special` says.

        - "none_raise" (default): no special token is allowed; raise ValueError if the text
          contains one (like tiktoken's default), so user text cannot inject `<|endoftext|>`;
        - "all": every special token becomes its id;
        - "none": special-token strings are encoded as ordinary text;
        - a set of strings: those become their ids; any *other* special token in the text raises
          ValueError (like tiktoken's `encode(text, allowed_special=...)`).
        """
        if allowed_special == "none":
            return self.encode_ordinary(text)
        if allowed_special == "none_raise":
            allowed: set[str] = set()
        elif allowed_special == "all":
            allowed = set(self.special_tokens)
        elif isinstance(allowed_special, set | frozenset):
            unknown = set(allowed_special) - set(self.special_tokens)
            if unknown:
                raise ValueError(f"not special tokens of this tokenizer: {sorted(unknown)}")
            allowed = set(allowed_special)
        else:
            raise ValueError(f"allowed_special must be 'none_raise', 'all', 'none' or a set, "
                             f"got {allowed_special!r}")
        disallowed = set(self.special_tokens) - allowed
        if disallowed:
            found = _special_regex(frozenset(disallowed)).search(text)
            if found:
                raise ValueError(
                    f"the text contains the special token {found.group()!r}, which is not allowed; "
                    "pass allowed_special to encode it as a special token, or 'none' to encode "
                    "it as ordinary text")
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for found in _special_regex(frozenset(allowed)).finditer(text):
            ids.extend(self.encode_ordinary(text[start : found.start()]))
            ids.append(self.special_tokens[found.group()])
            start = found.end()
        ids.extend(self.encode_ordinary(text[start:]))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of the tokens `ids` (special tokens as their UTF-8 text)."""
        parts = []
        for i in ids:
            i = int(i)
            if i in self.vocab:
                parts.append(self.vocab[i])
            elif i in self.inverse_special_tokens:
                parts.append(self.inverse_special_tokens[i].encode("utf-8"))
            else:
                raise ValueError(f"invalid token id {i}")
        return b"".join(parts)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """The text of `ids`; bytes that are not valid UTF-8 become U+FFFD (`errors="replace"`)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """The bytes of each token separately (a token may hold part of a character)."""
        return [self.decode_bytes([i]) for i in ids]


def _bpe_with_ranks(token: bytes, ranks: Mapping[bytes, int], max_rank: int) -> list[bytes]:
    """tiktoken's merge rule on `token` alone: merge the lowest-ranked adjacent pair (leftmost
    on ties) while its rank is below `max_rank`; return the parts."""
    parts = [bytes([b]) for b in token]
    while len(parts) >= 2:
        best, at = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best is None or rank < best):
                best, at = rank, i
        if best is None:
            break
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
    return parts


@cache
def _special_regex(specials: frozenset[str]) -> regex.Pattern:
    # longest first, so that a special token that contains another one wins
    alternatives = sorted(specials, key=lambda s: (-len(s), s))
    return regex.compile("|".join(regex.escape(s) for s in alternatives))


def _merges_from_ranks(ranks: Mapping[bytes, int]) -> tuple[list[int], dict[Pair, int]]:
    """(id of each byte, merges in rank order) that reproduce BPE with the rank table `ranks`."""
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(f"a byte-level rank table needs all 256 single bytes; missing {missing}")
    byte_ids = [ranks[bytes([b])] for b in range(256)]
    merges: dict[Pair, int] = {}
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = _bpe_with_ranks(token, ranks, max_rank=rank)
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) cannot be made by a BPE merge")
        merges[ranks[parts[0]], ranks[parts[1]]] = rank
    return byte_ids, merges


@cache
def _tiktoken_tables(encoding_name: str
                     ) -> tuple[str, list[int], dict[Pair, int], dict[str, int]]:
    import tiktoken

    enc = tiktoken.get_encoding(encoding_name)
    byte_ids, merges = _merges_from_ranks(enc._mergeable_ranks)
    return enc._pat_str, byte_ids, merges, dict(enc._special_tokens)


# --------------------------------------------------------------------------------------------
# Seeing tokens
# --------------------------------------------------------------------------------------------
#: Background colours of consecutive tokens (pastel, so the text stays readable).
TOKEN_COLOURS = ("#fde68a", "#bbf7d0", "#bfdbfe", "#fbcfe8", "#ddd6fe", "#fed7aa", "#a5f3fc")


class TokenPiece(NamedTuple):
    """One token of a text: its id, its bytes, and its text (None if the bytes are only part of
    a character's UTF-8 encoding, as often in Chinese and emoji)."""

    id: int
    bytes: bytes
    text: str | None


def token_pieces(text: str, tokenizer, allowed_special: AllowedSpecial = "all"
                 ) -> list[TokenPiece]:
    """Every token of `text`, encoded by `tokenizer` (a `RegexTokenizer` or `tiktoken.Encoding`)."""
    if isinstance(tokenizer, RegexTokenizer):
        ids = tokenizer.encode(text, allowed_special=allowed_special)
        pieces = tokenizer.token_bytes(ids)
    else:  # a tiktoken Encoding
        if allowed_special == "none":
            ids = tokenizer.encode_ordinary(text)
        else:
            allowed = {"all": "all", "none_raise": set()}.get(allowed_special, allowed_special)
            ids = tokenizer.encode(text, allowed_special=allowed)
        pieces = [tokenizer.decode_single_token_bytes(i) for i in ids]
    out = []
    for i, piece in zip(ids, pieces, strict=True):
        try:
            text_of_piece: str | None = piece.decode("utf-8")
        except UnicodeDecodeError:
            text_of_piece = None
        out.append(TokenPiece(int(i), piece, text_of_piece))
    return out


def tokens_html(text: str, tokenizer, allowed_special: AllowedSpecial = "all") -> str:
    """The tokens of `text` as coloured HTML spans and a caption (what `show_tokens` displays).

    Hover over a token to see its id and bytes. Spaces show as `·`, newlines as `↵`, tabs as `→`;
    a token that is only part of a character shows its bytes in hex, small, such as `‹e4 bd›`.
    The caption counts tokens and characters.
    """
    return pieces_html(token_pieces(text, tokenizer, allowed_special), len(text))


def pieces_html(pieces: list[TokenPiece], n_chars: int) -> str:
    """`TokenPiece`s as coloured HTML spans, with a caption counting them and `n_chars`."""
    import html

    spans = []
    for n, piece in enumerate(pieces):
        style = (f"background:{TOKEN_COLOURS[n % len(TOKEN_COLOURS)]};padding:1px 0;"
                 "border-radius:3px;margin-right:1px")
        if piece.text is None:
            shown = "‹" + piece.bytes.hex(" ") + "›"
            style += ";font-size:70%"
        else:
            shown = (html.escape(piece.text).replace(" ", "·").replace("\n", "↵\n")
                     .replace("\t", "→"))
        title = html.escape(f"id {piece.id} · bytes {piece.bytes.hex(' ')}", quote=True)
        spans.append(f'<span style="{style}" title="{title}">{shown}</span>')
    caption = f"{len(pieces)} tokens, {n_chars} characters"
    return ('<div style="font-family:monospace;white-space:pre-wrap;line-height:1.9">'
            + "".join(spans) + f'</div><div style="color:#666;font-size:85%">{caption}</div>')


def show_tokens(text: str, tokenizer, allowed_special: AllowedSpecial = "all"):
    """Render the tokens of `text` as coloured spans (an `IPython.display.HTML` object).

    Hover over a token to see its id and bytes. Spaces show as `·`, newlines as `↵`, tabs as `→`;
    a token that is only part of a character shows its bytes in hex, small, such as `‹e4 bd›`.
    A caption counts tokens and characters.
    """
    from IPython.display import HTML

    return HTML(tokens_html(text, tokenizer, allowed_special))
