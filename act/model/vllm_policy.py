"""On-policy sampling through vLLM (`train.sampler: vllm`), via TRL's vLLM integration.

TRL 1.16's `trl.generation.vllm_generation.VLLMGeneration` (the class its GRPO / RLOO trainers
use) runs vLLM in one of two modes (`train.vllm.mode`):

- colocate: a vLLM engine inside the training process, on the same GPU, holding
  `train.vllm.gpu_memory_utilization` of its memory;
- server: a separate `trl vllm-serve --model <base dir>` process (its own GPU), reached at
  `train.vllm.server_base_url` through TRL's `VLLMClient`.

Before every sampling round the trainer calls `sync_weights()`: TRL merges the LoRA adapter into
the base weights, pushes them into the engine (colocate: `load_weights`; server: an NCCL
broadcast), unmerges, and resets vLLM's prefix cache. `VLLMPolicy` then sends the token ids of the
same fitted prompts `HFPolicy` would build (`act.chat.fit_prompt`) and decodes the completion ids
into the policy's turns. vLLM is the optional `[vllm]` extra (Linux + CUDA only): without it, or
without a GPU, `check_vllm` stops the stage naming `train.sampler`.
"""

from __future__ import annotations

from typing import Any, Sequence

from act.errors import ParamsError
from act.records import Message


def check_vllm(*, capability=None) -> None:
    """A ParamsError naming `train.sampler` unless vLLM is installed and a CUDA GPU is visible."""
    from act.devices import cuda_capability, installed

    if not installed("vllm"):
        raise ParamsError("train.sampler: vllm needs the optional [vllm] extra (pip install -e '.[vllm]', Linux with "
                          "CUDA); or set train.sampler: hf")
    if not (capability or cuda_capability)()[0]:
        raise ParamsError("train.sampler: vllm needs a CUDA GPU and none is visible; set train.sampler: hf")


def vllm_engine(model, accelerator, tokenizer, sampler) -> Any:
    """TRL's VLLMGeneration for the training model, set up from the `OnPolicySampler` (its `vllm`
    params, decoding settings and the model's stop tokens)."""
    check_vllm()
    from trl.generation.vllm_generation import VLLMGeneration

    from act.model.loading import stop_ids

    cfg = sampler.vllm
    server = cfg.mode == "server"
    return VLLMGeneration(
        model=model, accelerator=accelerator, processing_class=tokenizer, mode=cfg.mode,
        server_base_url=cfg.server_base_url if server else None,
        gpu_memory_utilization=cfg.gpu_memory_utilization, max_model_length=cfg.max_model_length or None,
        temperature=sampler.temperature, top_p=sampler.top_p, top_k=sampler.top_k,
        max_completion_length=sampler.max_new_tokens,
        generation_kwargs={"stop_token_ids": stop_ids(accelerator.unwrap_model(model), tokenizer)},
    )


class VLLMPolicy:
    """A `Policy` over a vLLM engine with TRL's `generate(prompts, images, num_generations)` interface.

    Prompts are fitted and tokenized exactly as `HFPolicy` does; each call gets its own seed
    (`seed + calls`), so re-runs sample the same turns."""

    def __init__(self, engine, tokenizer, *, max_prompt_tokens: int | None = None, seed: int = 0):
        from act.model.loading import PromptStats

        self.engine, self.tokenizer = engine, tokenizer
        self.max_prompt_tokens, self.seed = max_prompt_tokens, seed
        self.calls = 0
        self.generated_tokens = 0
        self.samples = 0
        self.truncated_samples = 0
        self.last_truncated: list[bool] = []
        self.prompt_stats = PromptStats()

    def generate(self, chats: Sequence[Sequence[Message]]) -> list[str]:
        from act.chat import chat_ids

        chats = self.prompt_stats.fit(self.tokenizer, chats, self.max_prompt_tokens)
        prompts = [chat_ids(self.tokenizer, c, add_generation_prompt=True) for c in chats]
        self.engine.generation_kwargs = {**(self.engine.generation_kwargs or {}), "seed": self.seed + self.calls}
        self.calls += 1
        _, completions, _, _ = self.engine.generate(prompts, None, 1)
        if len(completions) != len(prompts):
            raise ValueError(f"vLLM returned {len(completions)} completions for {len(prompts)} prompts")
        self.generated_tokens += sum(len(c) for c in completions)
        cap = getattr(self.engine, "max_completion_length", None)
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        self.last_truncated = [bool(cap) and len(c) >= cap and list(c)[-1] not in ends for c in completions]
        self.samples += len(completions)
        self.truncated_samples += sum(self.last_truncated)
        return [self.tokenizer.decode(list(c), skip_special_tokens=True).strip() for c in completions]
