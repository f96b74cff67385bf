"""Memory and device knobs: dtype resolution, placement, optimizer / attention checks, and the
params that carry them into model loading and the trainers' arguments.

The GPU is stood in for at the hardware boundary only (`capability`: (CUDA visible, bf16 native));
everything else runs for real on the CPU. The `gpu`-marked tests check the same on CUDA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from act.devices import (
    attn_kwargs, check_optim, inference_device_map, one_process_one_gpu, precision_args, resolve_dtype,
    training_device_map,
)
from act.errors import ParamsError
from act.params import SftParams, TrainParams, load_params

CPU = lambda: (False, False)  # noqa: E731
T4 = lambda: (True, False)  # noqa: E731  (CUDA, compute capability 7.5: no bf16)
A100 = lambda: (True, True)  # noqa: E731

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("capability, expected", [(CPU, "fp32"), (T4, "fp16"), (A100, "bf16")])
def test_auto_dtype_follows_the_hardware(capability, expected):
    assert resolve_dtype("auto", capability=capability) == expected


@pytest.mark.parametrize("setting, capability, message", [
    ("bf16", CPU, "needs a CUDA GPU"), ("fp16", CPU, "needs a CUDA GPU"), ("bf16", T4, "no bf16"),
])
def test_explicit_dtype_the_hardware_cannot_run_names_the_key(setting, capability, message):
    with pytest.raises(ParamsError, match=rf"train\.dtype: .*{message}"):
        resolve_dtype(setting, key="train.dtype", capability=capability)


@pytest.mark.parametrize("setting, capability", [("fp32", CPU), ("fp32", A100), ("fp16", T4), ("fp16", A100)])
def test_explicit_dtype_is_kept_where_it_runs(setting, capability):
    assert resolve_dtype(setting, capability=capability) == setting


def test_precision_args_for_the_trainer():
    assert precision_args("auto", capability=CPU) == {"use_cpu": True, "bf16": False, "fp16": False}
    assert precision_args("auto", capability=T4) == {"use_cpu": False, "bf16": False, "fp16": True}
    assert precision_args("auto", capability=A100) == {"use_cpu": False, "bf16": True, "fp16": False}
    assert precision_args("fp32", capability=A100) == {"use_cpu": False, "bf16": False, "fp16": False}


def test_models_that_generate_go_to_this_process_gpu(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert inference_device_map(CPU) is None
    assert inference_device_map(A100) == {"": 0}
    monkeypatch.setenv("LOCAL_RANK", "3")  # accelerate launch / torchrun: one GPU per process
    assert inference_device_map(T4) == {"": 3}
    # a model being trained is placed by the Trainer, except a 4-bit one (bitsandbytes loads it onto the GPU)
    assert training_device_map(False, A100) is None
    assert training_device_map(True, A100) == {"": 3}
    assert training_device_map(True, CPU) is None


def test_bitsandbytes_optimizer_without_the_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed: find_spec and import fail
    for name in ("paged_adamw_8bit", "paged_adamw_32bit", "adamw_bnb_8bit", "lion_8bit"):
        with pytest.raises(ParamsError, match=r"train\.optim: .*bitsandbytes.*\[qlora\]"):
            check_optim(name, key="train.optim")
    assert check_optim("adamw_torch", key="train.optim") == "adamw_torch"


def test_attention_kernel_choice():
    assert attn_kwargs("", capability=A100) == {}
    assert attn_kwargs("sdpa", capability=CPU) == {"attn_implementation": "sdpa"}
    with pytest.raises(ParamsError, match=r"sft\.attn_implementation: flash_attention_2 needs a CUDA GPU"):
        attn_kwargs("flash_attention_2", key="sft.attn_implementation", capability=CPU)


def test_params_validate_the_knobs(tmp_path):
    p = tmp_path / "params.yaml"
    for text, key in [("train: {dtype: bfloat16}\n", "train.dtype"), ("sft: {optim: adam}\n", "sft.optim"),
                      ("train: {attn_implementation: flash}\n", "train.attn_implementation"),
                      ("train: {sampler: tgi}\n", "train.sampler"),
                      ("simulate: {generation_batch_size: 0}\n", "simulate.generation_batch_size"),
                      ("train: {vllm: {gpu_memory_utilization: 1.5}}\n", "train.vllm"),
                      ("sft: {dtype: fp32, attn_implementation: flash_attention_2}\n", "sft")]:
        p.write_text(text)
        with pytest.raises(ParamsError) as err:
            load_params(p)
        assert key in str(err.value), text


def test_several_gpus_in_one_process_do_not_get_data_parallel(caplog):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    assert args.n_gpu in (0, 1)
    args._n_gpu = 2  # what TrainingArguments sets with two visible GPUs and no distributed launch
    with caplog.at_level("WARNING", logger="act.devices"):
        assert one_process_one_gpu(args).n_gpu == 1
    assert "accelerate launch" in caplog.text and "CUDA_VISIBLE_DEVICES" in caplog.text


def test_trainer_arguments_carry_dtype_and_optim(tmp_path):
    from act.training.dpo import dpo_config
    from act.training.sft import sft_config

    train = TrainParams(optim="adamw_torch", gradient_checkpointing=True, gradient_accumulation_steps=4)
    args = dpo_config(train, tmp_path, seed=0)
    assert args.optim == "adamw_torch" and args.gradient_accumulation_steps == 4
    assert args.activation_checkpointing is True
    assert (args.bf16, args.fp16) == (False, False) and args.use_cpu  # this machine has no GPU
    sargs = sft_config(SftParams(optim="sgd", gradient_accumulation_steps=3), tmp_path, seed=0)
    assert sargs.optim == "sgd" and sargs.gradient_accumulation_steps == 3


def test_load_model_applies_dtype_and_attention(tiny_base):
    import torch

    from act.model.loading import load_model

    model, _ = load_model(tiny_base, dtype="fp32", attn_implementation="eager")
    assert next(model.parameters()).dtype == torch.float32 and model.device.type == "cpu"
    assert model.config._attn_implementation == "eager"
    with pytest.raises(ParamsError, match=r"simulate\.dtype: bf16 needs a CUDA GPU"):
        load_model(tiny_base, dtype="bf16", section="simulate")


def test_kbit_preparation_follows_gradient_checkpointing(tmp_path):
    pytest.importorskip("bitsandbytes")
    from act.model.loading import load_model
    from tests.chat_families import build_family

    path = build_family("zephyr", tmp_path / "m")  # hidden 64: bitsandbytes blocks need >= 64
    on, _ = load_model(path, quantization="nf4", trainable=True, gradient_checkpointing=True)
    off, _ = load_model(path, quantization="nf4", trainable=True, gradient_checkpointing=False)
    assert on.is_activation_checkpointing and not off.is_activation_checkpointing


@pytest.mark.parametrize("profile", sorted((ROOT / "profiles").glob("*.yaml")), ids=lambda p: p.name)
def test_every_profile_key_is_a_valid_param(profile):
    from act.params import load_profile

    overrides = load_profile(profile)
    params = load_params(ROOT / "params.yaml", overrides=overrides)
    for dotted, value in overrides.items():
        node = params
        for part in dotted.split("."):
            node = getattr(node, part)
        assert node == (tuple(value) if isinstance(value, list) else value), dotted


# ----------------------------------------------------------------------------------------- gpu
@pytest.mark.gpu
def test_policy_and_local_role_load_onto_the_gpu(tiny_base):
    import torch

    from act.model.loading import load_policy
    from act.params import RoleParams
    from act.roles.local import LocalChat

    policy = load_policy(str(tiny_base), max_new_tokens=4, batch_size=2, max_prompt_tokens=64)
    param = next(policy.model.parameters())
    assert param.is_cuda
    assert param.dtype == (torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else torch.float16)
    assert len(policy.generate([[{"role": "user", "content": "How many singers?"}]] * 3)) == 3
    role = LocalChat(RoleParams(backend="local", model=str(tiny_base), max_tokens=4), role="simulator")
    _, model = role._load()
    assert next(model.parameters()).is_cuda
    assert len(role.complete([[{"role": "user", "content": "Which year?"}]])) == 1


@pytest.mark.gpu
def test_dpo_arguments_use_mixed_precision_on_the_gpu(tmp_path):
    import torch

    from act.training.dpo import dpo_config

    args = dpo_config(TrainParams(), tmp_path, seed=0)
    bf16 = torch.cuda.get_device_capability()[0] >= 8
    assert not args.use_cpu and args.bf16 == bf16 and args.fp16 == (not bf16) and args.n_gpu == 1


def test_half_precision_policy_samples_without_rounding_its_base_weights(tiny_base):
    """In bf16, merge + unmerge of the LoRA weights would round the frozen base (and so the
    reference policy) every sampling round: HFPolicy leaves the adapter unmerged there."""
    import torch
    from peft import LoraConfig, get_peft_model

    from act.model.loading import HFPolicy, load_model

    model, tok = load_model(tiny_base)
    model = get_peft_model(model.to(torch.bfloat16), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.3)
    before = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    HFPolicy(model, tok, max_new_tokens=3).generate([[{"role": "user", "content": "How many singers?"}]])
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    # the same round trip done by hand does move bf16 weights: the guard is needed
    model.merge_adapter()
    model.unmerge_adapter()
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
