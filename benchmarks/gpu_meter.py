"""Measuring instruments for benchmarks/gpu_check.py: per-phase peak memory, per-step timing and
token counts of the Trainers, and generation throughput of `HFPolicy`.

They observe the project's code from outside, without changing what it computes:
- `phase()` resets the CUDA peak counters, then reports `torch.cuda.max_memory_allocated` /
  `max_memory_reserved` (GiB) and the seconds of the block (on the CPU: the process's peak RSS);
- `StepMeter` is a `TrainerCallback` added to every Trainer built while it is installed
  (transformers' DEFAULT_CALLBACKS). Per optimizer step it records the wall time, the CUDA peak so
  far, and the tokens (padded) of the training forwards, counted by a hook on the input
  embeddings that fires only with gradients on (not the DPO reference pass, not generation);
- `GenerationMeter` wraps `HFPolicy.generate`: chats, generated tokens and seconds of every call.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import time
from typing import Any, Iterator

GIB = 2 ** 30


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@contextlib.contextmanager
def phase(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Fill `record` with the block's seconds and memory peaks (also when the block raises)."""
    import torch

    gc.collect()
    if cuda():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        yield record
    finally:
        if cuda():
            torch.cuda.synchronize()
            record["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
            record["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 3)
        else:
            record["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3)
        record["seconds"] = round(time.perf_counter() - t0, 2)


def step_meter_class():
    from transformers import TrainerCallback

    class StepMeter(TrainerCallback):
        """Per optimizer step: seconds, CUDA peak so far, training tokens (padded) and widest sequence."""

        def __init__(self) -> None:
            self.runs: list[dict[str, Any]] = []
            self._hook = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            run = {"steps": [], "_t": time.perf_counter(), "_tokens": 0, "_width": 0}
            self.runs.append(run)

            def count(module, inputs, output):
                import torch

                if torch.is_grad_enabled() and module.training and inputs and hasattr(inputs[0], "shape"):
                    ids = inputs[0]
                    run["_tokens"] += int(ids.numel())
                    run["_width"] = max(run["_width"], int(ids.shape[-1]))

            if model is not None:
                self._hook = model.get_input_embeddings().register_forward_hook(count)

        def on_step_end(self, args, state, control, **kwargs):
            run, now = self.runs[-1], time.perf_counter()
            step = {"step": int(state.global_step), "seconds": round(now - run["_t"], 3),
                    "tokens": run["_tokens"], "max_width": run["_width"]}
            if cuda():
                import torch

                step["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
                step["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 3)
            run["steps"].append(step)
            run["_t"], run["_tokens"], run["_width"] = now, 0, 0

        def on_train_end(self, args, state, control, **kwargs):
            if self._hook is not None:
                self._hook.remove()
                self._hook = None

        def last(self) -> list[dict[str, Any]]:
            return self.runs[-1]["steps"] if self.runs else []

    return StepMeter


@contextlib.contextmanager
def step_meter():
    """A StepMeter attached to every Trainer created inside the block."""
    from transformers import trainer as trainer_mod

    meter = step_meter_class()()
    trainer_mod.DEFAULT_CALLBACKS.append(meter)
    try:
        yield meter
    finally:
        trainer_mod.DEFAULT_CALLBACKS.remove(meter)


def step_summary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Step time and training tokens/s; the first step (warm-up: kernels, allocator) apart."""
    if not steps:
        return {"steps": 0}
    later = steps[1:] or steps
    seconds = sum(s["seconds"] for s in later)
    tokens = sum(s["tokens"] for s in later)
    return {"steps": len(steps), "first_step_s": steps[0]["seconds"],
            "step_s": round(seconds / len(later), 3), "tokens_per_step": round(tokens / len(later)),
            "train_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
            "max_width": max(s["max_width"] for s in steps), "per_step": steps}


@contextlib.contextmanager
def generation_meter():
    """Record every `HFPolicy.generate` call inside the block: chats, generated tokens, seconds."""
    from act.model.loading import HFPolicy

    calls: list[dict[str, Any]] = []
    original = HFPolicy.generate

    def generate(self, chats):
        before, t0 = self.generated_tokens, time.perf_counter()
        out = original(self, chats)
        if cuda():
            import torch

            torch.cuda.synchronize()
        calls.append({"chats": len(chats), "tokens": self.generated_tokens - before,
                      "seconds": round(time.perf_counter() - t0, 3)})
        return out

    HFPolicy.generate = generate
    try:
        yield calls
    finally:
        HFPolicy.generate = original


def generation_summary(calls: list[dict[str, Any]]) -> dict[str, Any]:
    tokens, seconds = sum(c["tokens"] for c in calls), sum(c["seconds"] for c in calls)
    return {"generate_calls": len(calls), "generated_tokens": tokens, "generate_seconds": round(seconds, 2),
            "generated_tokens_per_s": round(tokens / seconds, 1) if seconds else None}
