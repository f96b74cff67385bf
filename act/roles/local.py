"""A role backed by a local transformers model (a path, or a hub name when online).

Chats are rendered with the tokenizer's chat template and generated in batches of
`roles.<name>.concurrency`, left-padded; replies go through the same persistent call cache as
the HTTP backend, so a re-run generates nothing it already has. The model goes to the GPU when
there is one (bf16, or fp16 on a GPU without bf16) and stays on the CPU in fp32 otherwise
(`act.devices`). Heavy imports happen on first use.
"""

from __future__ import annotations

import threading
from typing import Sequence

from act.records import Message
from act.roles.base import UsageCounter
from act.roles.cache import CallCache, Completion, call_key, complete_through_cache


class LocalChat:
    def __init__(self, cfg, *, role: str, cache: CallCache | None = None, usage: UsageCounter | None = None,
                 seed: int = 0):
        if not cfg.model:
            raise ValueError(f"roles.{role}.model: empty; the local backend needs a model path or hub name")
        self.cfg, self.role, self.cache, self.seed = cfg, role, cache, seed
        self.usage = usage if usage is not None else UsageCounter()
        self._model = self._tok = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.cfg.model

    def decoding(self) -> dict:
        return {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens, "seed": self.seed}

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from act.chat import prepare_tokenizer

            tok = prepare_tokenizer(AutoTokenizer.from_pretrained(self.cfg.model),
                                    source=f"roles.{self.role}.model={self.cfg.model}")
            tok.padding_side = "left"  # decoder-only batches must end where generation starts
            from act.devices import inference_device_map, resolve_dtype, torch_dtype

            placement = inference_device_map()
            model = AutoModelForCausalLM.from_pretrained(
                self.cfg.model, dtype=torch_dtype(resolve_dtype("auto")),
                **({"device_map": placement} if placement is not None else {}))
            model.eval()
            self._tok, self._model = tok, model
        return self._tok, self._model

    def complete(self, chats: Sequence[Sequence[Message]]) -> list[str]:
        chats = [list(c) for c in chats]
        keys = [call_key(self.role, self.cfg.model, c, self.decoding()) for c in chats]

        def compute(missing: list[int], store) -> None:
            size = max(1, self.cfg.concurrency)
            for start in range(0, len(missing), size):
                batch = missing[start:start + size]
                for i, completion in zip(batch, self._generate([chats[i] for i in batch])):
                    store(i, completion)

        with self._lock:  # one model, one generation at a time
            return complete_through_cache(self.cache, keys, compute, role=self.role, model=self.cfg.model,
                                          usage=self.usage)

    def _generate(self, chats: list[list[Message]]) -> list[Completion]:
        import torch

        from act.chat import render

        tok, model = self._load()
        texts = [render(tok, c, add_generation_prompt=True) for c in chats]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        sampling = self.cfg.temperature > 0
        kwargs = {"max_new_tokens": self.cfg.max_tokens, "do_sample": sampling, "pad_token_id": tok.pad_token_id}
        if sampling:
            kwargs["temperature"] = self.cfg.temperature
            torch.manual_seed(self.seed)
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        for row, mask in zip(new, enc["attention_mask"]):
            n_new = int((row != tok.pad_token_id).sum()) if tok.pad_token_id is not None else len(row)
            results.append(Completion(tok.decode(row, skip_special_tokens=True).strip(), int(mask.sum()), n_new))
        return results
