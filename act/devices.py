"""Where models run and in which precision: one place for every stage that loads a model.

- `resolve_dtype` turns the `dtype` param into bf16 / fp16 / fp32: `auto` is bf16 on a CUDA GPU
  that computes in it (compute capability >= 8: A100, L4, RTX 30xx/40xx, H100), fp16 on an older
  CUDA GPU (T4, V100), fp32 on the CPU. An explicit bf16/fp16 without a GPU able to run it is a
  ParamsError naming the key.
- `inference_device_map` puts a model that only generates (simulate, evaluate, local roles) on
  this process's GPU (`LOCAL_RANK` under `accelerate launch` / `torchrun`, else GPU 0) and
  leaves it on the CPU when there is none. A model being trained is placed by the Trainer, except
  a 4-bit one, which bitsandbytes must load onto its GPU (`training_device_map`).
- `one_process_one_gpu`: several visible GPUs in one plain process would make the Trainer wrap
  the model in `nn.DataParallel` (slow, and broken with LoRA + gradient checkpointing). Training
  then uses GPU 0 only, with a warning saying how to use them all (`accelerate launch`) or pick one
  (`CUDA_VISIBLE_DEVICES`).
- `check_optim` / `attn_kwargs`: optimizers and attention kernels that need an optional package
  fail early with the extra to install.

The hardware is asked through `cuda_capability` only, so tests can stand in for a GPU there.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Callable

from act.errors import ParamsError

log = logging.getLogger(__name__)

Capability = Callable[[], "tuple[bool, bool]"]


def cuda_capability() -> tuple[bool, bool]:
    """(a CUDA GPU is visible, that GPU computes in bf16 natively: compute capability >= 8)."""
    import torch

    if not torch.cuda.is_available():
        return False, False
    major, _ = torch.cuda.get_device_capability(local_gpu())
    return True, major >= 8


def local_gpu() -> int:
    """This process's GPU index: LOCAL_RANK under a distributed launcher, else 0."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def resolve_dtype(setting: str, *, key: str = "dtype", capability: Capability = cuda_capability) -> str:
    """"bf16" | "fp16" | "fp32" for a `dtype` param value (auto | bf16 | fp16 | fp32) on this machine."""
    cuda, bf16 = capability()
    if setting == "auto":
        return "bf16" if bf16 else "fp16" if cuda else "fp32"
    if setting not in ("bf16", "fp16", "fp32"):
        raise ParamsError(f"{key}: {setting!r} is not one of auto, bf16, fp16, fp32")
    if setting != "fp32" and not cuda:
        raise ParamsError(f"{key}: {setting} needs a CUDA GPU and none is visible; use auto or fp32")
    if setting == "bf16" and not bf16:
        raise ParamsError(f"{key}: this GPU has no bf16 (compute capability < 8, e.g. T4, V100); use auto or fp16")
    return setting


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def precision_args(setting: str, *, key: str = "dtype", capability: Capability = cuda_capability) -> dict:
    """TrainingArguments for the resolved dtype: mixed precision on a GPU, `use_cpu` without one."""
    cuda, _ = capability()
    name = resolve_dtype(setting, key=key, capability=capability)
    return {"use_cpu": not cuda, "bf16": name == "bf16", "fp16": name == "fp16"}


def inference_device_map(capability: Capability = cuda_capability) -> dict | None:
    """`device_map` for a model that only generates: this process's GPU, or None (CPU)."""
    cuda, _ = capability()
    return {"": local_gpu()} if cuda else None


def training_device_map(quantized: bool, capability: Capability = cuda_capability) -> dict | None:
    """`device_map` for a model about to be trained: a 4-bit model goes to this process's GPU at
    load time (the Trainer never moves a bitsandbytes model); any other is left to the Trainer,
    which also handles DDP / FSDP / DeepSpeed placement."""
    return inference_device_map(capability) if quantized else None


def one_process_one_gpu(args):
    """Keep a single-process run on one GPU: with several visible GPUs the Trainer would wrap the
    model in `nn.DataParallel`. Returns `args` (its device count set to 1 when it was more)."""
    if args.n_gpu > 1:
        log.warning("%d GPUs are visible to one training process: training on GPU 0 only (no nn.DataParallel). "
                    "To train on all of them run the stage under `accelerate launch`; to pick one, set "
                    "CUDA_VISIBLE_DEVICES (e.g. CUDA_VISIBLE_DEVICES=1).", args.n_gpu)
        args._n_gpu = 1
    return args


BITSANDBYTES_OPTIMS = ("bnb", "8bit", "paged_", "lion_")
"""Parts of the TrainingArguments `optim` names that bitsandbytes implements."""


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_optim(optim: str, *, key: str = "optim") -> str:
    """`optim`, after checking that the package it needs is installed."""
    if any(part in optim for part in BITSANDBYTES_OPTIMS) and not installed("bitsandbytes"):
        raise ParamsError(f"{key}: {optim} needs bitsandbytes, the optional [qlora] extra "
                          f"(pip install -e '.[qlora]'); or set {key} to adamw_torch_fused")
    return optim


def attn_kwargs(attn_implementation: str, *, key: str = "attn_implementation",
                capability: Capability = cuda_capability) -> dict:
    """`from_pretrained` keywords for the attention kernel ("" = the library's default)."""
    if not attn_implementation:
        return {}
    if attn_implementation == "flash_attention_2":
        if not capability()[0]:
            raise ParamsError(f"{key}: flash_attention_2 needs a CUDA GPU and none is visible; use sdpa or \"\"")
        if not installed("flash_attn"):
            raise ParamsError(f"{key}: flash_attention_2 needs the flash-attn package (pip install flash-attn "
                              "--no-build-isolation); or use sdpa")
    return {"attn_implementation": attn_implementation}
