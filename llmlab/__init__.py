"""LLM Lab: reference implementations and helpers the lectures import once they have taught them."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository checkout this package is installed from (an editable install).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Project-local cache for offline assets and rebuilt artefacts (git-ignored).
CACHE_DIR = PROJECT_ROOT / ".cache"


def native_matmul(dtype) -> bool:
    """Whether this CPU multiplies matrices in `dtype` with instructions of its own.

    float32 always; bfloat16 with x86 AVX-512 BF16 or AMX; float16 with AMX-FP16. Without them
    torch converts every half-precision operand to float32 in software, inside the product.
    """
    import torch

    checks = {torch.float32: (), torch.bfloat16: ("_is_avx512_bf16_supported",
                                                  "_is_amx_tile_supported"),
              torch.float16: ("_is_amx_fp16_supported",)}
    if dtype == torch.float32:
        return True
    # torch's checks are private, so looked up
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks.get(dtype, ()))


def fast_dtype():
    """The dtype this CPU multiplies matrices fastest in: `torch.bfloat16` where it has bfloat16
    matrix instructions (x86 AVX-512 BF16 or AMX, see `native_matmul`), `torch.float32` everywhere
    else.

    Without such instructions torch converts every bfloat16 operand to float32 in software, so
    bfloat16 saves memory but costs time: on a 2-core AVX2 machine (AMD Zen 3) a 512 x 576 by
    576 x 1536 product ran at 12 GFLOP/s in bfloat16 and at 80 in float32; on a CPU with AMX,
    bfloat16 prefilled SmolLM2 2.5x faster than float32. The environment variable
    `LLMLAB_DTYPE` (`bfloat16` or `float32`) overrides the choice.
    """
    import os

    import torch

    forced = os.environ.get("LLMLAB_DTYPE")
    if forced:
        if forced not in ("bfloat16", "float32"):
            raise ValueError(f"LLMLAB_DTYPE={forced!r}: use bfloat16 or float32")
        return getattr(torch, forced)
    return torch.bfloat16 if native_matmul(torch.bfloat16) else torch.float32
