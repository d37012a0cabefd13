"""A LLaMA-style decoder in one readable file, and the loader of a real one from a GGUF file.

Lecture 09 builds it from lecture 08's GPT by changing five things, named as in the LLaMA paper
(Touvron et al., 2023) and the models that followed it (LLaMA 2/3, SmolLM2, Qwen):

    token ids (B, T)
      -> token embedding                             tok_embeddings           (B, T, dim)
         (no position embedding: positions enter through RoPE inside attention)
      -> n_layers x TransformerBlock:
             h = x + attention(attention_norm(x))    RMSNorm, grouped-query attention with RoPE
             x = h + feed_forward(ffn_norm(h))       RMSNorm, SwiGLU feed-forward
      -> final RMSNorm                               norm
      -> linear map to the vocabulary                output (tied: the embedding matrix itself)
    logits (B, T, vocab_size)

1. LayerNorm -> **RMSNorm**: divide by the root mean square, no mean subtracted, no bias.
2. learned positions -> **rotary position embedding (RoPE)**: rotate each query and key by an
   angle proportional to its position, so that q·k depends only on the distance between them.
3. GELU MLP -> **SwiGLU**: (silu(x W1) * x W3) W2, three matrices and a gate.
4. multi-head -> **grouped-query attention (GQA)**: fewer key/value heads than query heads
   (SmolLM2-135M: 9 query heads share 3 key/value heads), so the KV cache is 3x smaller.
5. tied or untied embeddings: SmolLM2 reuses the embedding matrix as the output layer.

**RoPE pairing.** A rotation acts on pairs of channels. Meta's reference code rotates *adjacent*
pairs (x[2i], x[2i+1]); Hugging Face's code rotates *half-split* pairs (x[i], x[i + d/2]). Both are
the same model up to a fixed permutation of the rows of W_q and W_k inside each head: attention
only uses q·k, which a permutation applied to both q and k leaves unchanged. GGUF files store
W_q and W_k in the adjacent layout (llama.cpp's converter permutes Hugging Face's rows), so this
file rotates adjacent pairs and loads the weights as they are. (transformers' GGUF loader undoes
the permutation and rotates half-split pairs; the tests check that both give the same logits.)

**KV cache.** Generation feeds one new token at a time; its keys and values are appended to a
pre-allocated `KVCache`, so each step attends over the stored past instead of recomputing it.
`forward(idx, cache, start_pos)` processes the tokens at positions start_pos .. start_pos + T - 1.

**Weights.** `Llama.from_gguf(path, dtype)` reads the file (`read_gguf`), dequantizes every
tensor (Q4_1, Q8_0, F32) to float32 in numpy with the `gguf` package, and casts it to `dtype`.
On a CPU without bfloat16 (or float16) matrix instructions, a product with many rows (a prompt)
converts the weight to float32 and multiplies in float32, which is several times faster there
than torch's emulated half-precision product (see `EMULATED`); one row (decoding) reads the
half weights.

**Decoding from the 4-bit weights.** Decoding one token multiplies a single row of activations by
every weight matrix, so its speed is set by how many bytes of weights it reads, not by arithmetic.
`from_gguf(path, dtype, int4_decode=True)` (dtype bfloat16 or float32) also keeps every matrix
the file stores in Q4_1 as the file's own 4-bit codes with their per-block scale and minimum
(5 bits a weight instead of bfloat16's 16; the Q8_0 output matrix as two such 4-bit halves,
10 bits), and a forward pass with one position per sequence multiplies by those through torch's
int4 kernel, in bfloat16 (float32 activations are converted for it, and its result back);
longer inputs (a prompt) use the dense copy, which the CPU multiplies faster when there are many
rows. The two paths round differently (the kernel keeps the scales and its arithmetic in
bfloat16), so their logits agree to bfloat16 precision, not bit for bit.
Matrices that read the same input (wq, wk, wv; w1, w3) also get their codes stacked into one
matrix (`fuse_int4`), so a decoding step makes 4 kernel calls per block instead of 7.

**The decoding loop.** With the 4-bit weights, a step of one token per row does not go through
the modules: `decode_blocks` runs the same operations on the same tensors as one loop over the
blocks, compiled by TorchScript, so Python's cost per module call and per small operation
(about a quarter of the step, at one token) is not paid 30 times. The numbers are the modules'
bit for bit (tested); the modules stay the definition, and everything else (prompts, dense
models) runs through them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmlab import native_matmul
from llmlab.gguf_file import (  # noqa: F401  (the file format and tokenizer, re-exported here)
    CONTROL_TOKEN,
    PRE_TOKENIZERS,
    GGUFFile,
    GGUFTensor,
    gguf_fields,
    gpt2_byte_chars,
    model_path,
    read_gguf,
    tokenizer_from_gguf,
)


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 49152
    dim: int = 576  # width of the residual stream
    n_layers: int = 30
    n_heads: int = 9  # query heads
    n_kv_heads: int = 3  # key/value heads (grouped-query attention)
    ffn_dim: int = 1536  # hidden width of the SwiGLU feed-forward block
    norm_eps: float = 1e-5
    rope_base: float = 100_000.0
    context_length: int = 8192
    tied_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads "
                             f"({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError("RoPE needs an even head size")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_gguf_fields(cls, fields: dict) -> LlamaConfig:
        """The config from a GGUF file's metadata ({key: value}, architecture `llama`)."""
        arch = fields["general.architecture"]
        if arch != "llama":
            raise ValueError(f"not a llama-architecture file (general.architecture = {arch!r})")
        return cls(
            vocab_size=len(fields["tokenizer.ggml.tokens"]),
            dim=int(fields["llama.embedding_length"]),
            n_layers=int(fields["llama.block_count"]),
            n_heads=int(fields["llama.attention.head_count"]),
            n_kv_heads=int(fields["llama.attention.head_count_kv"]),
            ffn_dim=int(fields["llama.feed_forward_length"]),
            norm_eps=float(fields["llama.attention.layer_norm_rms_epsilon"]),
            rope_base=float(fields["llama.rope.freq_base"]),
            context_length=int(fields["llama.context_length"]),
        )


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, over the last dimension (computed in float32)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`RMSNorm`'s arithmetic: x * rsqrt(mean(x^2) + eps) in float32, rounded to x's dtype; then
    the learned gain, in x's dtype (multiplying in float32 first rounds differently)."""
    # Bit for bit what `F.rms_norm(x, (dim,), eps=eps) * weight` gives (tested), but a decoding
    # step runs 61 norms of one row each, and written out, in place where it can be, they are
    # faster. (torch's mean is the sum divided by the count, so this is `.mean(-1)` exactly.)
    xf = x.float()
    mean_square = (xf * xf).sum(-1, keepdim=True).div_(x.shape[-1])
    return (xf * mean_square.add_(eps).rsqrt_()).to(x.dtype) * weight


def rope_angles(head_dim: int, length: int, base: float) -> torch.Tensor:
    """The rotations of positions 0 .. length - 1 as unit complex numbers, (length, head_dim / 2).

    Channel pair i of the token at position m is rotated by the angle m * base^(-2i / head_dim):
    the first pairs turn fast (they see short distances), the last ones slowly (long distances).
    """
    angles = torch.outer(torch.arange(length, dtype=torch.float32),
                         rope_frequencies(head_dim, base))
    return torch.polar(torch.ones_like(angles), angles)  # cos(angle) + i sin(angle)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs (x[..., 2i], x[..., 2i+1]) of x (B, H, T, head_dim).

    Each pair is read as the complex number x[2i] + i x[2i+1] and multiplied by its rotation
    (`rotations`: (T, head_dim / 2) from `rope_angles`, or (B, 1, T, head_dim / 2) for rows at
    different positions), in float32.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotations).flatten(-2).to(x.dtype)


class KVCache:
    """Pre-allocated keys and values of every layer: (n_layers, B, n_kv_heads, max_len, head_dim).

    `length` is how many positions are filled. A cache can be cloned (to keep the state of a
    shared prompt prefix and reuse it) and expanded to a batch (to score several continuations of
    one prefix at once).
    """

    def __init__(self, config: LlamaConfig, batch_size: int = 1, max_len: int | None = None,
                 dtype: torch.dtype = torch.float32):
        max_len = max_len or config.context_length
        shape = (config.n_layers, batch_size, config.n_kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def nbytes(self) -> int:
        return self.k.element_size() * self.k.nelement() * 2

    def clone(self, max_len: int | None = None, batch_size: int = 1) -> KVCache:
        """A copy of the filled part, with room for `max_len` positions, repeated to a batch."""
        if self.batch_size != 1 and batch_size != self.batch_size:
            raise ValueError("only a cache of batch size 1 can be expanded to a batch")
        new = object.__new__(KVCache)
        max_len = max(max_len or self.max_len, self.length)
        shape = (*self.k.shape[:1], batch_size, self.k.shape[2], max_len, self.k.shape[4])
        new.k = torch.zeros(shape, dtype=self.k.dtype)
        new.v = torch.zeros(shape, dtype=self.v.dtype)
        new.k[:, :, :, : self.length] = self.k[:, :, :, : self.length]
        new.v[:, :, :, : self.length] = self.v[:, :, :, : self.length]
        new.length = self.length
        return new


class Linear(nn.Linear):
    """`nn.Linear` without bias that can also hold its weight as 4-bit codes (see `add_int4`).

    With codes, an input with one position per sequence, (B, 1, in_features), is multiplied by
    them (torch's int4 kernel: bfloat16 activations, the codes unpacked block by block inside the
    kernel, never as a whole float matrix); any other input uses the dense `weight`, in float32
    when it has many rows and the CPU has no instructions for the weight's dtype (`EMULATED`).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        self.int4: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add_int4(self, codes: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor) -> None:
        """Add a 4-bit part scale * code + min (codes 0..15, one scale and one min per block of
        Q4_BLOCK weights along a row): the weight is the sum of its parts (a Q4_1 matrix is one
        part, a Q8_0 matrix two: see `int4_parts`). torch's kernel computes
        (code - 8) * scale + zero, so its zero is min + 8 * scale."""
        packed = torch._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), 1)
        zeros = mins + 8 * scales
        # (in_features / Q4_BLOCK, out_features, 2): the layout the kernel reads
        scales_and_zeros = torch.stack([scales, zeros], -1).transpose(0, 1).contiguous()
        self.int4.append((packed, scales_and_zeros.to(torch.bfloat16)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.int4 and decoding(x):
            return int4_matmul(x, self.int4)
        if x.numel() >= UPCAST_ROWS * x.shape[-1] and self.weight.dtype in EMULATED:
            return F.linear(x.float(), self.weight.float()).to(x.dtype)
        return F.linear(x, self.weight)


#: The half-precision dtypes this CPU has no matrix instructions for (`llmlab.native_matmul`).
#: There torch converts each weight to float32 inside the product, again for every row block,
#: so a product with many rows (a prompt, a batch of continuations) runs faster when `Linear`
#: converts the weight once and multiplies in float32: 512 rows by a 576 x 1536 bfloat16 matrix
#: took 46 ms as it is and 6 ms converted, on a 2-core AMD Zen 3 (AVX2). One row is faster as it
#: is (0.1 against 1.2 ms): reading half the bytes is what decoding needs. The result is rounded
#: back to the half dtype, so activations stay half precision either way.
EMULATED = frozenset(d for d in (torch.bfloat16, torch.float16) if not native_matmul(d))
#: From this many rows on, a product in an `EMULATED` dtype is done in float32 (measured on the
#: same machine: break-even at about 5 rows for the 576 x 1536 matrices and 20 for the output head).
UPCAST_ROWS = 32


def decoding(x: torch.Tensor) -> bool:
    """Whether x (B, T, features) has one position per sequence: a decoding step."""
    return x.dim() == 3 and x.shape[1] == 1


#: A weight held as 4-bit parts (see `Linear.add_int4`): (packed codes, scales and zeros) each.
Int4Parts = list[tuple[torch.Tensor, torch.Tensor]]


def int4_matmul(x: torch.Tensor, parts: Int4Parts) -> torch.Tensor:
    """x (..., in_features) times a weight held as 4-bit parts (see `Linear.add_int4`), in
    bfloat16 (other activations are converted for the kernel, and the result back)."""
    rows = x.reshape(-1, x.shape[-1])
    if rows.dtype != torch.bfloat16:  # (tested, not converted: even a no-op .to() costs time)
        rows = rows.to(torch.bfloat16)
    y = int4_rows(rows, parts).unflatten(0, x.shape[:-1])
    return y if y.dtype == x.dtype else y.to(x.dtype)


def int4_rows(rows: torch.Tensor, parts: Int4Parts) -> torch.Tensor:
    """rows (N, in_features), bfloat16, times a weight held as 4-bit parts: (N, out_features)."""
    packed, scales_and_zeros = parts[0]
    block = rows.shape[1] // scales_and_zeros.shape[0]  # Q4_BLOCK (one scale and zero each)
    y = torch._weight_int4pack_mm_for_cpu(rows, packed, block, scales_and_zeros)
    for packed, scales_and_zeros in parts[1:]:  # a Q8_0 matrix's second half
        y = y.add_(torch._weight_int4pack_mm_for_cpu(rows, packed, block, scales_and_zeros))
    return y


def fuse_int4(*linears: Linear) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 4-bit parts of layers that read the same input (q, k, v; gate and up), stacked along
    the output dimension: one kernel call then computes all their outputs side by side, instead
    of one call each. torch packs the codes in blocks of INT4_PACK_ROWS output rows, so when
    every layer's width is a multiple of it, the stacked codes are the layers' packed codes one
    after another; each layer keeps views of its own rows, so the codes are stored once.
    [] unless every layer has codes, in the same number of parts, and such a width."""
    if (not all(lin.int4 and lin.out_features % INT4_PACK_ROWS == 0 for lin in linears)
            or len({len(lin.int4) for lin in linears}) != 1):
        return []
    fused = []
    for i in range(len(linears[0].int4)):
        packed = torch.cat([lin.int4[i][0] for lin in linears])
        scales_and_zeros = torch.cat([lin.int4[i][1] for lin in linears], dim=1)
        fused.append((packed, scales_and_zeros))
        start = 0
        for lin in linears:
            rows = lin.int4[i][0].shape[0]
            lin.int4[i] = (packed[start:start + rows], lin.int4[i][1])
            start += rows
    return fused


Q4_BLOCK = 32  # weights per Q4_1 block (one scale and one minimum each)
INT4_PACK_ROWS = 64  # torch's CPU int4 packing interleaves the output rows in blocks of 64


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE: n_heads query heads, n_kv_heads key/value heads."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (config.n_heads, config.n_kv_heads,
                                                        config.head_dim)
        self.wq = Linear(config.dim, config.n_heads * config.head_dim)
        self.wk = Linear(config.dim, config.n_kv_heads * config.head_dim)
        self.wv = Linear(config.dim, config.n_kv_heads * config.head_dim)
        self.wo = Linear(config.n_heads * config.head_dim, config.dim)
        self.wqkv_int4: list = []  # wq, wk and wv's 4-bit codes stacked (see `fuse_int4`)

    def forward(self, x: torch.Tensor, rotations: torch.Tensor, cache: KVCache | None = None,
                layer: int = 0, start_pos: int = 0, last_only: bool = False,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention output (B, T, dim) for x (B, T, dim); with `last_only`, that of the last
        position alone, (B, 1, dim) (every position's keys and values are still computed and
        cached: the last query reads them all). `key_mask` (B, S): which of the S key slots
        each row may read (see `Llama.forward`)."""
        B, T, _ = x.shape
        H, H_kv = self.n_heads, self.n_kv_heads
        if self.wqkv_int4 and decoding(x):  # one kernel call for all three projections
            qkv = int4_matmul(x, self.wqkv_int4)
        else:
            qkv = torch.cat([self.wq(x), self.wk(x), self.wv(x)], dim=-1)
        # (B, T, (H + 2 H_kv) * head_dim) -> (B, H + 2 H_kv, T, head_dim): q's heads, k's, v's
        qkv = qkv.view(B, T, H + 2 * H_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(qkv[:, : H + H_kv], rotations).split((H, H_kv), dim=1)  # one call
        v = qkv[:, H + H_kv :]
        if cache is not None:  # store this step's keys and values, attend over all so far
            end = start_pos + T
            cache.k[layer, :, :, start_pos:end] = k
            cache.v[layer, :, :, start_pos:end] = v
            k, v = cache.k[layer, :, :, :end], cache.v[layer, :, :, :end]
        if last_only:
            q = q[:, :, -1:]
        y = grouped_query_attention(q, k, v, key_mask)
        return self.wo(y.transpose(1, 2).reshape(B, q.shape[2], -1))


def grouped_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Causal attention of q (B, H, T, d) over k, v (B, H_kv, S, d), S >= T, the last T of the S
    key positions being the queries' own; query head h reads key/value head h // (H / H_kv).
    `key_mask` (B, S), if given, also hides the keys where it is False (a batch's padding)."""
    B, H, T, d = q.shape
    S, H_kv = k.shape[2], k.shape[1]
    keys = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
    if T == 1:
        # One new token attends to everything before it, so no causal mask is needed, and the
        # H / H_kv query heads that read one key/value head can be handed to attention as that
        # head's H / H_kv queries: the same sums, and in bfloat16 on a CPU about 5x faster at
        # 500 keys than `enable_gqa` (measured: 50 vs 290 microseconds per call on 2 cores).
        y = F.scaled_dot_product_attention(q.view(B, H_kv, H // H_kv, d), k, v, attn_mask=keys)
        return y.view(B, H, 1, d)
    if T == S and keys is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    allowed = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
    if keys is not None:
        allowed = allowed & keys
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)


#: Per block, the tensors a decoding step reads (`Llama.plan_decode`): the attention norm's gain,
#: q/k/v's 4-bit parts (stacked), the output projection's, the feed-forward norm's gain, the
#: gate and up projections' (stacked) and the down projection's.
DecodePlan = list[tuple[torch.Tensor, Int4Parts, Int4Parts, torch.Tensor, Int4Parts, Int4Parts]]


def decode_blocks(x: torch.Tensor, rotations: torch.Tensor, cache_k: torch.Tensor,
                  cache_v: torch.Tensor, start_pos: int, key_mask: torch.Tensor | None,
                  plan: DecodePlan, n_heads: int, n_kv_heads: int, eps: float) -> torch.Tensor:
    """Every block for one new token per row, x (B, dim) -> (B, dim), from the 4-bit weights:
    what `TransformerBlock.forward` computes for x (B, 1, dim), the same operations on the same
    tensors in the same order, so the same numbers bit for bit (tested), written as one loop.

    Why a second copy of the blocks: at one token a step the arithmetic is small, and the
    modules' Python (7 module calls a block and 60-odd small operations, for 30 blocks) was
    about a quarter of the step; this loop, compiled by TorchScript, runs the operations
    without the interpreter in between. Measured on a 2-core AMD Zen 4 at 512-576 positions,
    best of 30 interleaved runs of 16 tokens: 13.3 ms a token through the modules, 11.2 ms
    through this loop in Python, 9.9 ms compiled (on the same machine when busier: 14.1, 12.9
    and 11.5 ms). `rotations` and `key_mask` are as in `Llama.forward`; the caches are
    `KVCache.k` and `.v`; position `start_pos` is written and everything before it read.
    """
    B = x.shape[0]
    head_dim = x.shape[1] // n_heads
    H, H_kv, end = n_heads, n_kv_heads, start_pos + 1
    for layer, (norm1, wqkv, wo, norm2, w13, w2) in enumerate(plan):
        # attention: q, k and v of the new position, (B, heads, 1, head_dim)
        qkv = int4_matmul(rms_norm(x, norm1, eps), wqkv).view(B, H + 2 * H_kv, 1, head_dim)
        qk = apply_rope(qkv[:, : H + H_kv], rotations)
        cache_k[layer, :, :, start_pos:end] = qk[:, H:]
        cache_v[layer, :, :, start_pos:end] = qkv[:, H + H_kv :]
        y = grouped_query_attention(qk[:, :H], cache_k[layer, :, :, :end],
                                    cache_v[layer, :, :, :end], key_mask)
        x = x + int4_matmul(y.view(B, H * head_dim), wo)
        # SwiGLU feed-forward
        gate, up = int4_matmul(rms_norm(x, norm2, eps), w13).chunk(2, dim=-1)
        x = x + int4_matmul(F.silu(gate) * up, w2)
    return x


_compiled = []


def decode_blocks_compiled():
    """`decode_blocks` compiled by TorchScript (once per process, in about 20 ms), or as it is
    if that fails. TorchScript is deprecated in favour of `torch.compile`, but that needs a C++
    compiler, which a learner's laptop may not have, and TorchScript is in the torch this course
    pins; its warning is silenced here. The compiled loop computes the same numbers (tested).
    `Llama` runs it with TorchScript's optimizing executor off: on a CPU that executor fuses
    nothing by default, so it has nothing to gain, and its first two (profiling) calls took
    60-100 and 25-35 ms, against 30 and 12 ms without it."""
    if not _compiled:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                _compiled.append(torch.jit.script(decode_blocks))
        except Exception:  # noqa: BLE001 (any failure to compile leaves the Python loop)
            _compiled.append(decode_blocks)
    return _compiled[0]


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x) — w1 is the gate, w3 the up projection, w2 the down one."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.w1 = Linear(config.dim, config.ffn_dim)
        self.w2 = Linear(config.ffn_dim, config.dim)
        self.w3 = Linear(config.dim, config.ffn_dim)
        self.w13_int4: list = []  # w1 and w3's 4-bit codes stacked (see `fuse_int4`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w13_int4 and decoding(x):  # one kernel call for the gate and the up projection
            gate, up = int4_matmul(x, self.w13_int4).chunk(2, dim=-1)
        else:
            gate, up = self.w1(x), self.w3(x)
        return self.w2(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x, rotations, cache=None, layer=0, start_pos=0, last_only=False,
                key_mask=None):
        """x (B, T, dim) -> (B, T, dim); with `last_only`, the last position's alone (B, 1, dim)."""
        attended = self.attention(self.attention_norm(x), rotations, cache, layer, start_pos,
                                  last_only, key_mask)
        h = (x[:, -1:] if last_only else x) + attended
        return h + self.feed_forward(self.ffn_norm(h))


class Embedding(nn.Embedding):
    """`nn.Embedding` that skips its random initialisation on the "meta" device, where
    `Llama.from_gguf` builds the model before loading every weight from the file: torch's
    normal_ on a meta tensor imports torch's compiler, about 1 s in every process."""

    def reset_parameters(self) -> None:
        if self.weight.device.type != "meta":
            super().reset_parameters()


class Llama(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = Linear(config.dim, config.vocab_size)
        if config.tied_embeddings:
            self.output.weight = self.tok_embeddings.weight
        # a plain attribute, not a buffer: `model.to(dtype)` must leave these complex64 numbers be;
        # on the CPU even when the model is built on the "meta" device (`from_gguf`)
        with torch.device("cpu"):
            self.rotations = rope_angles(config.head_dim, config.context_length, config.rope_base)
        # per block, the tensors a decoding step reads from the 4-bit weights (`plan_decode`)
        self.decode_plan: list[tuple] = []

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        return KVCache(self.config, batch_size, max_len, self.dtype)

    @torch.inference_mode()
    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, start_pos: int = 0,
                last_only: bool = False, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None,
                rope_positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size), float32, for the tokens idx (B, T) at positions start_pos…

        With a cache, the keys and values of these positions are stored in it and attention also
        reads the positions before start_pos from it; `cache.length` becomes start_pos + T.
        `last_only` returns the logits of the last position alone, (B, 1, vocab_size): all that
        generation needs, and the output layer is a fifth of this model's work per token. The last
        block then computes only that position's attention output and feed-forward, too (its
        keys and values are still cached for all of them): the other positions' results would
        be thrown away.
        `positions` (B, n), indices into the T positions, returns the logits at those alone,
        (B, n, vocab_size): what scoring continuations needs.
        `key_mask` (B, start_pos + T) and `rope_positions` (B, T) let a batch hold sequences of
        different lengths in one cache: row b reads only the key slots where key_mask[b] is
        True, and its tokens are rotated as positions rope_positions[b] rather than as their
        slots. Decoding after prompts of different lengths then puts every row's next token in
        the same slot: the padding slots between are hidden, and each token keeps its true
        position, so each row computes what it would alone (`llmlab.prompting.greedy_replies`).
        A step of one token per row with a cache, in a model with 4-bit weights, runs through
        `decode_blocks` (the same numbers; see the module docstring).
        """
        B, T = idx.shape
        end = start_pos + T
        limit = cache.max_len if cache is not None else self.config.context_length
        if end > limit:
            raise ValueError(f"positions up to {end} do not fit the context of {limit} tokens")
        if cache is not None and start_pos > cache.length:
            raise ValueError(f"start_pos {start_pos} leaves a gap after the {cache.length} "
                             "cached positions")
        if rope_positions is None:
            rotations = self.rotations[start_pos:end]
        else:  # (B, 1, T, head_dim / 2): one set of rotations per row, the same for every head
            if int(rope_positions.max()) >= self.config.context_length:
                raise ValueError(f"positions up to {int(rope_positions.max()) + 1} do not fit "
                                 f"the context of {self.config.context_length} tokens")
            rotations = self.rotations[rope_positions][:, None]
        if key_mask is not None and key_mask.shape != (B, end):
            raise ValueError(f"key_mask must be (B, start_pos + T) = ({B}, {end}), "
                             f"not {tuple(key_mask.shape)}")
        if self.decode_plan and T == 1 and cache is not None and positions is None:
            return self._decode(idx, cache, start_pos, rotations, key_mask)
        x = self.tok_embeddings(idx)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, rotations, cache, i, start_pos, last_only and i == last, key_mask)
        if cache is not None:
            cache.length = end
        if positions is not None:
            x = x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))
        return self.output(self.norm(x)).float()

    def _decode(self, idx: torch.Tensor, cache: KVCache, start_pos: int,
                rotations: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """`forward` for one new token per row, (B, 1), through `decode_blocks` (compiled by
        TorchScript where it can be: see `decode_blocks_compiled`)."""
        B = idx.shape[0]
        x = F.embedding(idx.view(B), self.tok_embeddings.weight)  # (B, dim)
        with torch.jit.optimized_execution(False):  # see `decode_blocks_compiled`
            x = decode_blocks_compiled()(x, rotations, cache.k, cache.v, start_pos, key_mask,
                                         self.decode_plan, self.config.n_heads,
                                         self.config.n_kv_heads, self.config.norm_eps)
        cache.length = start_pos + 1
        return self.output(self.norm(x.view(B, 1, -1))).float()

    def plan_decode(self) -> None:
        """Collect, per block, the tensors `_decode` reads: the two norms' gains and the 4-bit
        parts of the fused q/k/v, the output projection, the fused gate/up and the down
        projection. Called by `from_gguf(int4_decode=True)`; call it again after replacing a
        module (or set `decode_plan = []` to always go through the modules). Left empty unless
        every block has all four in 4 bits."""
        plan = []
        for block in self.layers:
            attention, feed_forward = block.attention, block.feed_forward
            parts = (attention.wqkv_int4, attention.wo.int4, feed_forward.w13_int4,
                     feed_forward.w2.int4)
            if not all(parts):
                plan = []
                break
            wqkv, wo, w13, w2 = parts
            plan.append((block.attention_norm.weight, wqkv, wo, block.ffn_norm.weight, w13, w2))
        self.decode_plan = plan

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_gguf(cls, path, dtype: torch.dtype = torch.float32,
                  int4_decode: bool = False) -> Llama:
        """Load a llama-architecture GGUF file (a path, or a reader from `read_gguf`), every
        tensor dequantized and cast to `dtype`. `int4_decode` (bfloat16 or float32) also keeps
        the file's Q4_1 matrices as 4-bit codes for decoding (see the module docstring)."""
        if int4_decode and dtype not in (torch.bfloat16, torch.float32):
            raise ValueError("int4_decode needs dtype=torch.bfloat16 or torch.float32 (torch's "
                             "int4 kernel takes bfloat16 activations; float32 ones are "
                             "converted)")
        reader = read_gguf(path) if isinstance(path, str | Path) else path
        tensors = {t.name: t for t in reader.tensors}
        config = replace(LlamaConfig.from_gguf_fields(gguf_fields(reader)),
                         tied_embeddings="output.weight" not in tensors)
        with torch.device("meta"):
            model = cls(config)
        state = {}
        for name, target in _gguf_names(config).items():
            state[target] = torch.from_numpy(dequantize(tensors[name])).to(dtype)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if set(missing) - {"output.weight"} or unexpected:
            raise ValueError(f"GGUF tensors do not match the model: missing {missing}, "
                             f"unexpected {unexpected}")
        if config.tied_embeddings:
            model.output.weight = model.tok_embeddings.weight
        if int4_decode:
            modules = dict(model.named_modules())
            names = _gguf_names(config)
            if config.tied_embeddings:  # the output layer multiplies by the embedding's codes
                names["token_embd.weight"] = "output.weight"
            for name, target in names.items():
                module = modules[target.removesuffix(".weight")]
                if isinstance(module, Linear):
                    for part in int4_parts(tensors[name]):
                        module.add_int4(*part)
            for layer in model.layers:
                attention, feed_forward = layer.attention, layer.feed_forward
                attention.wqkv_int4 = fuse_int4(attention.wq, attention.wk, attention.wv)
                feed_forward.w13_int4 = fuse_int4(feed_forward.w1, feed_forward.w3)
            model.plan_decode()
        return model.eval()


def _gguf_names(config: LlamaConfig) -> dict[str, str]:
    """{GGUF tensor name: this file's parameter name}."""
    names = {"token_embd.weight": "tok_embeddings.weight", "output_norm.weight": "norm.weight"}
    if not config.tied_embeddings:
        names["output.weight"] = "output.weight"
    per_layer = {"attn_norm": "attention_norm", "attn_q": "attention.wq",
                 "attn_k": "attention.wk", "attn_v": "attention.wv",
                 "attn_output": "attention.wo", "ffn_norm": "ffn_norm",
                 "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2",
                 "ffn_up": "feed_forward.w3"}
    for i in range(config.n_layers):
        for src, dst in per_layer.items():
            names[f"blk.{i}.{src}.weight"] = f"layers.{i}.{dst}.weight"
    return names


# ---------------------------------------------------------------------------------------------
# GGUF tensors as weights (the file itself: `llmlab.gguf_file`)
# ---------------------------------------------------------------------------------------------
def dequantize(tensor) -> np.ndarray:
    """A GGUF tensor as float32, in PyTorch's layout (rows = output features)."""
    import gguf

    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    # unquantized (F32) tensors come back as read-only views of the memory-mapped file
    return np.array(values, dtype=np.float32, copy=not values.flags.writeable)


def int4_parts(tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A GGUF matrix as 4-bit parts (codes 0..15, scales, mins) whose sum is its weight, read
    from the file's bytes: [] for a format other than Q4_1 and Q8_0.

    Q4_1: each block of 32 weights is a float16 scale d, a float16 minimum m and 16 bytes of
    codes (low nibbles = weights 0..15, high nibbles = 16..31); w = d * q + m. One part.
    Q8_0: each block is a float16 scale d and 32 signed bytes q; w = d * q. Split every byte as
    q = 16 * hi + lo (lo = q & 15 in 0..15, hi = q >> 4 in -8..7): two parts, the high nibbles
    (code hi + 8, scale 16 d, min -128 d) and the low ones (code lo, scale d, min 0).
    """
    kind = tensor.tensor_type.name
    raw = np.asarray(tensor.data)
    rows = raw.shape[0]
    if kind == "Q4_1":
        blocks = raw.reshape(rows, -1, 4 + Q4_BLOCK // 2)
        scales = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        mins = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        nibbles = blocks[..., 4:]
        codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).reshape(rows, -1)
        return [(torch.from_numpy(codes), torch.from_numpy(scales), torch.from_numpy(mins))]
    if kind == "Q8_0":
        blocks = raw.reshape(rows, -1, 2 + Q4_BLOCK)
        scales = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        q = blocks[..., 2:].copy().view(np.int8).reshape(rows, -1)
        high, low = (q >> 4) + 8, q & 0x0F
        d = torch.from_numpy(scales)
        return [(torch.from_numpy(high.astype(np.uint8)), 16 * d, -128 * d),
                (torch.from_numpy(low.astype(np.uint8)), d, torch.zeros_like(d))]
    return []


def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, context: int,
                   bytes_per_value: int = 2, batch_size: int = 1) -> int:
    """Memory of a KV cache: 2 (keys and values) x layers x kv heads x head size x positions."""
    return 2 * n_layers * n_kv_heads * head_dim * context * bytes_per_value * batch_size


def rope_frequencies(head_dim: int, base: float) -> torch.Tensor:
    """base^(-2i / head_dim) for i = 0 .. head_dim/2 - 1: the angle per position of each pair."""
    return 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)

