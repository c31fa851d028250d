"""Which reduced-precision matrix products this machine runs natively.

Two speed-ups of the package depend on the processor's matrix units, and both are slower than plain
float32 where the units are missing, because the library then emulates them:

* int8 one-hot products (``torch._int_mm``) for the sequence weights and the held-out split: exact
  either way, so only speed is at stake. Measured on a 2-core AMD EPYC with AVX2 only
  (benchmarks/results/hardware-2026-12-02.md): 0.9-1.6 int8 GOP/s against 54-77 float32 GFLOP/s, and
  the weights of 2,000 BLAT_ECOLX rows took 15.8 s instead of 0.32 s.
* bfloat16 inputs to the decoder's large products during training (the fast recipe): they change the
  rounding of the results, and on the same machine ran at 0.5-1.6 GFLOP/s against 54-77 in float32
  (a BLAT_ECOLX training step 3.9x slower).

The answers come from the CPU's feature flags, never from a timing, so the same machine always makes
the same choice (a bf16 model and a float32 model differ in their last digits).
"""

from __future__ import annotations

import platform

import torch

#: x86 feature flags (torch.cpu's names) under which oneDNN runs each product natively
_INT8_FLAGS = ("avx512_vnni", "amx_tile")
_BF16_FLAGS = ("avx512_bf16", "amx_tile")
#: the values of TrainConfig.matmul_dtype
MATMUL_DTYPES = ("auto", "float32", "bfloat16")


def cpu_flags() -> dict[str, bool]:
    """torch's view of the x86 CPU's matrix features ({} where torch cannot say: another architecture,
    an older torch)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return {}
    try:
        from torch.cpu import _is_amx_tile_supported, _is_avx512_bf16_supported, _is_vnni_supported
    except ImportError:  # a torch without these probes: assume nothing
        return {}
    return {"avx512_vnni": bool(_is_vnni_supported()), "avx512_bf16": bool(_is_avx512_bf16_supported()),
            "amx_tile": bool(_is_amx_tile_supported())}


def native_int8_matmul(device_type: str = "cpu") -> bool:
    """Whether int8 x int8 -> int32 products run on native units on ``device_type`` (x86 CPUs with
    AVX-512 VNNI or AMX); elsewhere float32 products are faster."""
    if device_type != "cpu":
        return False
    flags = cpu_flags()
    return any(flags.get(f, False) for f in _INT8_FLAGS)


def native_bf16_matmul(device: torch.device) -> bool:
    """Whether bfloat16 products run natively on ``device``: a CUDA device of compute capability 8 or
    more (or ROCm), or an x86 CPU with AVX-512 BF16 or AMX."""
    if device.type == "cuda":  # bfloat16 tensor cores from Ampere (compute capability 8) on; ROCm devices have them
        if not torch.cuda.is_available():
            return False
        return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    flags = cpu_flags()
    return any(flags.get(f, False) for f in _BF16_FLAGS)


def resolve_matmul_dtype(name: str, device: torch.device) -> str:
    """``TrainConfig.matmul_dtype`` as run on ``device``: "auto" -> "bfloat16" where
    :func:`native_bf16_matmul`, else "float32"; an explicit "float32" or "bfloat16" as given."""
    if name not in MATMUL_DTYPES:
        raise ValueError(f"matmul_dtype must be one of {', '.join(MATMUL_DTYPES)}, not {name!r}")
    if name != "auto":
        return name
    return "bfloat16" if native_bf16_matmul(device) else "float32"
