"""act.model: embedded tokenizer/model, base pointer resolution, policy sampling, config -> None for off."""

from __future__ import annotations

import json

import pytest

from act.params import LoraParams
from conftest import needs_bitsandbytes


@pytest.fixture
def base(tiny_base):
    return tiny_base


def test_tokenizer_marks_assistant_tokens_and_has_pad(base):
    from act.model.loading import load_tokenizer

    tok = load_tokenizer(base)
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id != tok.eos_token_id
    chat = [{"role": "user", "content": "How many singers?"}, {"role": "assistant", "content": "SELECT 1"}]
    enc = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    kept = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(kept) == "SELECT 1<|end|>"


def test_policy_generates_one_turn_per_chat_reproducibly(base):
    from act.model.loading import load_policy

    chats = [[{"role": "user", "content": "How many singers?"}],
             [{"role": "system", "content": "ctx"}, {"role": "user", "content": "Which year?"}]]
    a = load_policy(str(base), None, max_new_tokens=5, temperature=1.0, seed=3).generate(chats)
    b = load_policy(str(base), None, max_new_tokens=5, temperature=1.0, seed=3).generate(chats)
    assert len(a) == 2 and all(isinstance(x, str) for x in a) and a == b


def test_marker_dir_means_base_and_pointer_names_hub_model(base, tmp_path):
    from act.model.loading import ADAPTER_MARKER, POINTER, has_adapter, resolve_base

    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / ADAPTER_MARKER).write_text(json.dumps({"adapter": False}))
    assert not has_adapter(tmp_path / "sft") and not has_adapter(None)
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / POINTER).write_text(json.dumps({"source": "pretrained", "model": "HuggingFaceH4/zephyr-7b-beta"}))
    assert resolve_base(tmp_path / "hub") == "HuggingFaceH4/zephyr-7b-beta"
    assert resolve_base(base) == str(base)
    with pytest.raises(FileNotFoundError, match="base stage"):
        resolve_base(tmp_path / "sft")


def test_config_functions_return_none_for_off():
    from act.model.loading import get_peft_config, get_quantization_config

    assert get_quantization_config("none") is None
    with pytest.raises(ValueError, match="quantization"):
        get_quantization_config("int3")
    assert get_peft_config(None) is None


@needs_bitsandbytes
def test_nf4_quantization_config():
    from act.model.loading import get_quantization_config

    q = get_quantization_config("nf4")
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"


def test_peft_config_from_lora_params():
    from act.model.loading import get_peft_config

    cfg = get_peft_config(LoraParams(r=4, alpha=8, target_modules=("q_proj",)))
    assert cfg.r == 4 and cfg.lora_alpha == 8 and set(cfg.target_modules) == {"q_proj"}
