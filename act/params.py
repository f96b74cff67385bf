"""Typed, strictly loaded `params.yaml`: one frozen dataclass per section.

`load_params("params.yaml")` returns a `Params`; a stage reads only its own section (and the
top-level `seed` / `dataset`). Unknown keys and bad values fail naming the dotted key.
Every field's comment in params.yaml says what turning it does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from act.params_loader import check, load_dataclass

DatasetName = Literal["pacific", "abg_coqa", "ambigsql"]
Budget = int | Literal["all"]
Dtype = Literal["auto", "bf16", "fp16", "fp32"]
"""Model weights and mixed precision: auto = bf16 on a CUDA GPU that has it, fp16 on older CUDA
GPUs (T4, V100), fp32 on CPU (`act.devices.resolve_dtype`)."""
AttnImplementation = Literal["", "eager", "sdpa", "flash_attention_2"]
"""`attn_implementation` of `from_pretrained`; "" = the library's default (sdpa where it can)."""
Optim = Literal[
    "adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adamw_bnb_8bit", "adamw_8bit",
    "paged_adamw_8bit", "paged_adamw_32bit", "lion_8bit", "lion_32bit", "paged_lion_8bit", "paged_lion_32bit",
    "rmsprop",
]
"""TrainingArguments `optim` names; the 8-bit, paged and lion ones need bitsandbytes (the [qlora] extra).
rmsprop is the reference code's ACT optimizer (`ACTConfig.optim`)."""
Scheduler = Literal["cosine", "constant_with_warmup", "constant", "linear"]
"""TrainingArguments `lr_scheduler_type` names (warmup is 0 steps here)."""


# ----------------------------------------------------------------------------------------- ingest
@dataclass(frozen=True)
class IngestDataset:
    budget: Budget = "all"
    """Training conversations kept (seeded sample): 50 / 100 / "all" as in the paper."""
    eval_conversations: Budget = "all"
    """Eval conversations kept (seeded sample of the eval split)."""
    eval_fraction: float = 0.3
    """Share of conversations (AmbigSQL: of databases) held out for evaluation."""

    def __post_init__(self):
        check(isinstance(self.budget, str) or self.budget > 0, "budget must be > 0 or 'all'")
        check(0.0 < self.eval_fraction < 1.0, "eval_fraction must be in (0, 1)")


@dataclass(frozen=True)
class AmbigSQLParams(IngestDataset):
    ambiguity_types: tuple[str, ...] = ("filter_value", "ambiguous_column", "order_limit", "aggregation")
    """Perturbations applied to make a Spider request under-specified."""
    ambiguous_fraction: float = 0.5
    """Share of source questions turned into ambiguous (CLARIFY) conversations."""
    query_timeout_s: float = 5.0
    """Time limit for executing each gold SQL at ingest."""


@dataclass(frozen=True)
class CustomDataset(IngestDataset):
    path: str = ""
    """A JSONL file in the documented conversation format (act/data/custom.py); empty = off.
    `python -m stages.ingest --dataset custom` reads it when no --raw is given."""


@dataclass(frozen=True)
class IngestParams:
    on_error: Literal["raise", "skip"] = "raise"
    """Malformed source record: stop naming file/record/field, or skip it and count it."""
    max_context_chars: int = 6000
    """Grounding context is cut to this many characters (tiny models have short windows)."""
    data_seed: int = -1
    """Seed of the data: the train/eval split, the budget sample and AmbigSQL's perturbations.
    -1 = the run's `seed` (each seed draws its own data). Fix it (e.g. 0) to compare training
    seeds on one split: every seed is then scored on the same eval conversations."""
    # the paper's data-efficient settings: 50 / 100 training conversations
    pacific: IngestDataset = field(default_factory=lambda: IngestDataset(budget=50, eval_conversations=30))
    abg_coqa: IngestDataset = field(default_factory=lambda: IngestDataset(budget=100, eval_conversations=60))
    ambigsql: AmbigSQLParams = field(default_factory=lambda: AmbigSQLParams(budget=100, eval_conversations=60))
    custom: CustomDataset = field(default_factory=CustomDataset)


# --------------------------------------------------------------------------------------- annotate
@dataclass(frozen=True)
class AnnotateParams:
    use_gold_labels: bool = True
    """Keep dataset labels where they exist; False relabels everything with the annotator role
    (the paper's "no action label available" setting)."""
    measure_agreement: bool = True
    """Also run the annotator on gold-labelled turns and report its accuracy / Macro F1 against
    the labels (costs one annotator call per turn with a model backend; cached)."""


# ------------------------------------------------------------------------------------------ roles
@dataclass(frozen=True)
class RoleParams:
    backend: Literal["offline", "http", "local"] = "offline"
    """offline: deterministic, no model; http: OpenAI-compatible API; local: transformers model."""
    model: str = ""
    """http: model name; local: path or hub name."""
    base_url: str = ""
    """http: e.g. http://127.0.0.1:8000/v1"""
    api_key_env: str = "OPENAI_API_KEY"
    """http: name of the environment variable holding the key (the key itself never goes here);
    empty or unset variable = no Authorization header (local vLLM / Ollama)."""
    temperature: float = 0.0
    """Sampling temperature; 0 = greedy (part of the cache key)."""
    max_tokens: int = 256
    """Longest reply in tokens (part of the cache key)."""
    timeout_s: float = 60.0
    """http: seconds to wait for one reply before retrying."""
    max_retries: int = 5
    """http: retries on 429 / 5xx / timeout / unreadable reply before the stage fails."""
    backoff_s: float = 1.0
    """http: first retry waits this long, doubling each time (a longer Retry-After wins)."""
    concurrency: int = 4
    """http: requests in flight at once; local: generation batch size."""
    prompt: str = ""
    """Prompt file under act/prompts, without .yaml (empty = the role's own, e.g. rejecter)."""
    min_check_f1: float = 0.9
    """classifier: an http/local backend must reach this Macro F1 on the labelled check set
    (data/checks/classifier.jsonl) before simulate / train / evaluate use it, else the stage stops."""

    def __post_init__(self):
        check(self.temperature >= 0.0, "temperature must be >= 0")
        check(self.max_tokens > 0, "max_tokens must be > 0")
        check(self.timeout_s > 0, "timeout_s must be > 0")
        check(self.max_retries >= 0, "max_retries must be >= 0")
        check(self.backoff_s >= 0, "backoff_s must be >= 0")
        check(self.concurrency >= 1, "concurrency must be >= 1")
        check(0.0 <= self.min_check_f1 <= 1.0, "min_check_f1 must be in [0, 1]")


@dataclass(frozen=True)
class RolesParams:
    cache_dir: str = ".cache/roles"
    """Persistent call cache: re-runs never pay for the same call twice (empty = no cache)."""
    classifier: RoleParams = field(default_factory=RoleParams)
    simulator: RoleParams = field(default_factory=RoleParams)
    rejecter: RoleParams = field(default_factory=RoleParams)
    annotator: RoleParams = field(default_factory=RoleParams)


# ------------------------------------------------------------------------------------------ pairs
@dataclass(frozen=True)
class PairsParams:
    clarify_winner: Literal["continuation", "question"] = "continuation"
    """CLARIFY turns: the winning side is the whole gold continuation (question, user reply,
    answer) as in the reference code, or the clarifying question alone."""
    random_actions: bool = False
    """Ablation "ACT w/ Random Actions": winning/losing actions sampled at random (seeded); Phase 2
    relabels against the drawn winning action too, so no phase sees the true action."""
    samples: int = 20
    """Pairs written to the human-readable sample file."""


# ------------------------------------------------------------------------------------ base / sft
@dataclass(frozen=True)
class LoraParams:
    r: int = 8
    """Adapter rank: higher = more capacity and memory (models/sft and models/act hold adapters only)."""
    alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.05
    """Dropout on the adapter input during training."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Linear layers that get an adapter (Llama/Mistral names)."""

    def __post_init__(self):
        check(self.r >= 1, "r must be >= 1")
        check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")


@dataclass(frozen=True)
class EmbeddedModelParams:
    vocab_size: int = 2048
    """BPE vocabulary trained on the training split (special tokens included)."""
    hidden_size: int = 128
    """Model width; parameters grow with its square."""
    layers: int = 2
    heads: int = 4
    max_positions: int = 2048
    """Longest sequence the model accepts (rotary positions)."""
    block_size: int = 1024
    """Tokens per pre-training sequence: positions beyond it are never trained."""
    batch_size: int = 2
    steps: int = 240
    """Causal-LM pre-training steps on the training split's text: more = a better language prior, slower."""
    learning_rate: float = 2e-3

    def __post_init__(self):
        check(self.hidden_size % self.heads == 0, "hidden_size must be divisible by heads")
        check(self.vocab_size >= 300, "vocab_size must be >= 300 (256 bytes + special tokens)")
        check(self.steps >= 0, "steps must be >= 0")


@dataclass(frozen=True)
class BaseParams:
    model: str = "embedded"
    """"embedded" builds a small model offline; a named offline model (smollm2-135m-instruct,
    fetched with scripts/fetch_model.sh), a .gguf file, a local HF directory, or a hub name."""
    revision: str = ""
    """Hub models: the commit, tag or branch to load ("" = the default branch)."""
    chat_template: str = ""
    """A chat template for the policy: a family name (chatml, zephyr, llama3, qwen2.5, gemma,
    mistral) or a Jinja file; "" keeps the tokenizer's own (required when it has none)."""
    embedded: EmbeddedModelParams = field(default_factory=EmbeddedModelParams)
    """Size and pre-training of the embedded model (ignored for a hub model)."""


@dataclass(frozen=True)
class SftParams:
    enabled: bool = True
    """False skips SFT: models/sft is an empty marker meaning "use the base model"."""
    learning_rate: float = 2e-3
    epochs: int = 8
    batch_size: int = 8
    """Conversations per device per forward pass."""
    gradient_accumulation_steps: int = 1
    """Forward passes per optimizer step: effective batch = batch_size x this (x devices)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: much less memory, ~30% more time."""
    fast_lm_head: bool = True
    """LM head only at the gold assistant tokens, not at every position (`act.training.fast_forward`);
    same loss. False = TRL's fused head, which off CUDA projects every position."""
    max_length: int = 1024
    """Tokens per conversation: a longer one keeps its system message, latest request and gold
    turns whole; the middle of its context and then its oldest history turns are cut (`act.chat.fit_prompt`)."""
    save_steps: int = 25
    """Checkpoint every N optimizer steps into checkpoints/sft (outside DVC's outs); a rerun after a
    crash or kill resumes from the last one; removed once the stage succeeds. 0 = no checkpoints."""
    quantization: Literal["none", "nf4"] = "none"
    """nf4 = QLoRA SFT on a 4-bit base model."""
    dtype: Dtype = "auto"
    """Weights and mixed precision: auto (bf16 on a recent GPU, fp16 on T4/V100, fp32 on CPU) | bf16 | fp16 | fp32."""
    attn_implementation: AttnImplementation = ""
    """Attention kernel: "" (library default) | eager | sdpa | flash_attention_2 (CUDA, flash-attn package)."""
    optim: Optim = "adamw_torch_fused"
    """Optimizer (TrainingArguments name); paged_adamw_8bit / paged_adamw_32bit page states to CPU under
    memory pressure and need bitsandbytes (the [qlora] extra)."""
    lora: LoraParams = field(default_factory=lambda: LoraParams(
        r=16, alpha=32, target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")))
    """The adapter SFT trains; ACT continues training this same adapter (train.init=sft). MLP
    targets matter for a small model."""

    def __post_init__(self):
        check(self.save_steps >= 0, "save_steps must be >= 0")
        check(not (self.attn_implementation == "flash_attention_2" and self.dtype == "fp32"),
              "attn_implementation flash_attention_2 needs dtype auto, bf16 or fp16")


# ---------------------------------------------------------------------------------------- launch
@dataclass(frozen=True)
class LaunchParams:
    accelerate_config: str = ""
    """How the sft and train stages start: "" = one plain Python process; a path (e.g.
    configs/accelerate/multi_gpu_ddp.yaml) = `accelerate launch --config_file <path>`."""
    num_processes: int = 0
    """With accelerate: processes (GPUs) to start; 0 = the config file's own num_processes."""

    def __post_init__(self):
        check(self.num_processes >= 0, "num_processes must be >= 0")


# --------------------------------------------------------------------------------- simulate/train
@dataclass(frozen=True)
class SimulateParams:
    max_new_tokens: int = 256
    """Tokens the policy may generate per turn: at least the reference's 128 and the longest gold
    answer of the data (AmbigSQL eval: 210 tokens of the embedded model's tokenizer, 163 of
    SmolLM2's); samples that hit it are counted (`truncated_samples`)."""
    temperature: float = 0.0
    """Sampling temperature of the simulate stage's samples (0 = greedy, as the reference code);
    keep it equal to train.sample_temperature so the sampled-once ablation samples as ACT does."""
    max_clarify_turns: int = 1
    """Clarifying exchanges the simulated user answers per trajectory (the paper: 1)."""
    tolerance: float = 0.9
    """A trajectory succeeds when its task score reaches this (reference: F1 >= 0.9)."""
    max_prompt_tokens: int = 384
    """Token budget of every policy prompt (sampling in simulate, train and evaluate, and DPO's
    prompts): a longer prompt keeps its system header and latest request; the middle of the
    grounding context is cut, then the oldest history turns are dropped (`act.chat.fit_prompt`)."""
    generation_batch_size: int = 16
    """Chats per `generate` call of the policy (simulate, train's on-policy sampling, evaluate):
    higher = faster on a GPU, more KV-cache memory."""
    wrong_action_rule: Literal["paper", "released"] = "paper"
    """Relabelling of a sample with the wrong action (simulate and train): paper = it always loses
    (Algorithm 2); released = the released code's rule, where a direct answer on a CLARIFY turn that
    scores >= tolerance wins (`act.simulate.relabel`)."""

    def __post_init__(self):
        check(self.max_clarify_turns >= 0, "max_clarify_turns must be >= 0")
        check(0.0 <= self.tolerance <= 1.0, "tolerance must be in [0, 1]")
        check(self.temperature >= 0.0, "temperature must be >= 0")


@dataclass(frozen=True)
class VllmParams:
    mode: Literal["colocate", "server"] = "colocate"
    """colocate: vLLM runs inside the training process and shares its GPU; server: a separate
    `trl vllm-serve` process (its own GPU) receives the policy's weights before every sampling round."""
    server_base_url: str = "http://127.0.0.1:8000"
    """server mode: where `trl vllm-serve --model <base> --port 8000` listens."""
    gpu_memory_utilization: float = 0.3
    """colocate: share of the GPU's memory vLLM takes for weights and KV cache (the rest is training's)."""
    max_model_length: int = 0
    """colocate: vLLM's context length (0 = the model's own); prompt budget + generated tokens is enough."""

    def __post_init__(self):
        check(0.0 < self.gpu_memory_utilization <= 1.0, "gpu_memory_utilization must be in (0, 1]")


@dataclass(frozen=True)
class TrainParams:
    init: Literal["sft", "base"] = "sft"
    """Starting policy: the SFT adapter, or the base model ("ACT from an unaligned start")."""
    on_policy: bool = True
    """False = off-policy DPO on the Phase-1 pairs ("ACT w/o on-policy sampling")."""
    sampling: Literal["every", "once"] = "every"
    """every: sample the current policy during training (ACT); once: use the simulate stage's
    relabelled pairs, sampled once from the starting policy (ablation)."""
    sample_every: int = 1
    """Sample the current policy every N optimizer steps (1 = every batch, as in the reference)."""
    simulate_trajectories: bool = True
    """False: judge on-policy samples by their action only ("w/o trajectory simulation")."""
    mask_user_turns: bool = False
    """True keeps the simulated user's tokens out of the DPO loss (the reference trains on them)."""
    sample_temperature: float = 0.0
    """Temperature of the on-policy samples during training (0 = greedy, as the reference code's
    `generate` call samples). At 1.0 a small policy rarely produces a winning trajectory."""
    sample_top_p: float = 1.0
    """Nucleus sampling of training samples (used when sample_temperature > 0; 1.0 = off)."""
    sample_top_k: int = 0
    """Top-k sampling of training samples (used when sample_temperature > 0; 0 = off)."""
    probe_every: int = 5
    """Every N optimizer steps, DPO margins and reward accuracy on the fixed probe set (the eval
    split's Phase-1 pairs) are logged (as eval_rewards/*); 0 = off."""
    beta: float = 0.05
    """DPO temperature: higher = stay closer to the reference policy."""
    learning_rate: float = 5e-4
    epochs: int = 1
    """Passes over the pairs (the reference: 2, `ACTConfig.num_train_epochs`)."""
    lr_scheduler: Scheduler = "cosine"
    """Learning-rate schedule (the reference: cosine, `TrainingConfig.lr_scheduler_type`)."""
    batch_size: int = 8
    """Pairs per device per forward pass, and per sampling round."""
    gradient_accumulation_steps: int = 1
    """Forward passes per optimizer step (each samples its own pairs when on-policy)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: much less memory, ~30% more time."""
    fast_lm_head: bool = True
    """LM head only at completion tokens, not at every position (`act.training.fast_forward`); same losses."""
    fast_shared_prefix: bool = True
    """Each pair's prompt runs once for both sides (its KV cache reused), in the policy and the reference
    passes; losses equal to ~1e-6. Needs fast_lm_head; off under gradient_checkpointing (no cache)."""
    fast_ref_cache: bool = True
    """Reference log-probs kept per (prompt, side) token sequence: the frozen reference runs only on
    sequences it has not scored (second epoch, a side ACT kept, a repeated greedy sample)."""
    loss_type: tuple[str, ...] = ("sigmoid",)
    """TRL DPO loss(es): sigmoid (DPO), ipo, hinge, ..."""
    max_length: int = 1024
    """Prompt + completion tokens. The completion stays whole; the prompt is the one sampling sees
    (simulate.max_prompt_tokens), cut further only when prompt + completion would pass this; a pair
    that cannot fit even then is dropped (counted)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = run all epochs)."""
    save_steps: int = 5
    """Checkpoint every N optimizer steps into checkpoints/train (adapter, optimizer, RNG states and
    the sampler's rounds); a rerun after a crash or kill resumes from the last one. 0 = off."""
    quantization: Literal["none", "nf4"] = "none"
    """nf4 = QLoRA: 4-bit nf4 base via bitsandbytes (also on CPU: saves memory, not time)."""
    dtype: Dtype = "auto"
    """Weights and mixed precision (also of the policy simulate and evaluate load): auto | bf16 | fp16 | fp32."""
    attn_implementation: AttnImplementation = ""
    """Attention kernel (also for simulate and evaluate): "" | eager | sdpa | flash_attention_2."""
    optim: Optim = "adamw_torch_fused"
    """Optimizer (TrainingArguments name); paged_* and *_8bit need bitsandbytes (the [qlora] extra);
    rmsprop = the reference's ACT optimizer."""
    sampler: Literal["hf", "vllm"] = "hf"
    """On-policy sampling engine: hf (transformers `generate`) | vllm (TRL's vLLM integration: the
    [vllm] extra and a CUDA GPU)."""
    vllm: VllmParams = field(default_factory=lambda: VllmParams())
    """vLLM settings, used when sampler = vllm."""
    lora: LoraParams = field(default_factory=LoraParams)
    """The adapter trained from train.init=base; from the SFT adapter, its own config is kept."""

    def __post_init__(self):
        check(self.sample_every >= 1, "sample_every must be >= 1")
        check(self.sample_temperature >= 0.0, "sample_temperature must be >= 0")
        check(0.0 < self.sample_top_p <= 1.0 and self.sample_top_k >= 0, "sample_top_p must be in (0, 1], sample_top_k >= 0")
        check(self.probe_every >= 0, "probe_every must be >= 0")
        check(self.beta > 0, "beta must be > 0")
        check(self.batch_size >= 1 and self.epochs >= 1, "batch_size and epochs must be >= 1")
        check(len(self.loss_type) >= 1, "loss_type needs at least one loss")
        check(self.save_steps >= 0, "save_steps must be >= 0")
        check(not (self.attn_implementation == "flash_attention_2" and self.dtype == "fp32"),
              "attn_implementation flash_attention_2 needs dtype auto, bf16 or fp16")


# --------------------------------------------------------------------------------------- evaluate
AUC_QUESTIONS: dict[str, str] = {
    "pacific": "Which item or period are you asking about?",
    "abg_coqa": "Could you clarify what you are asking about?",
    "ambigsql": "Could you clarify which information you want?",
    "custom": "Could you clarify what you mean?",
}
"""`evaluate.auc_questions`' defaults: one content-free clarifying question per dataset, in the
register of that corpus's human questions (see `act.metrics.likelihood`)."""


@dataclass(frozen=True)
class EvaluateParams:
    policies: tuple[str, ...] = ("base", "sft", "act")
    """Policies evaluated: "base" is the base model alone; any other name is the LoRA adapter
    passed as --adapter NAME=DIR to the stage (sft, act, or an ablation's adapter)."""
    max_turns: int = 1
    """Clarifying questions the simulated user answers before a conversation is cut off
    (a cut-off conversation has no final answer and scores 0: counted as non-terminated). 1, as in
    training and the reference: the offline user's second reply is the fully specified request."""
    seeds: tuple[int, ...] = (0,)
    """Sampling seeds; each figure is the mean over seeds, with its std when there are several."""
    temperature: float = 0.0
    """Policy sampling temperature at evaluation (0 = greedy: every seed gives the same output)."""
    max_new_tokens: int = 256
    """Length limit of each policy turn (as simulate.max_new_tokens; cut turns are counted)."""
    limit: int = 0
    """Eval records used, first N in stored order (0 = all): a quick look on a big eval split."""
    sql_timeout_s: float = 5.0
    """AmbigSQL: time limit per query execution; a slower query scores 0 (counted as timeout)."""
    embedding_model: str = ""
    """Local path of a sentence-embedding model for turn-level similarity; empty = off."""
    samples: int = 4
    """Trajectories per policy shown side by side with the gold in the HTML report."""
    coqa_averaging: Literal["max", "leave_one_out"] = "max"
    """Abg-CoQA / custom turn score over several gold answers: the best one (max), or the official
    CoQA script's leave-one-out average (never higher)."""
    auc_questions: dict[str, str] = field(default_factory=lambda: dict(AUC_QUESTIONS))
    """`action_auc`: the ONE clarifying question scored against the gold direct answer on every
    record of a dataset, by dataset name (`act.metrics.likelihood`: one fixed wording, so only the
    prompt moves its likelihood)."""
    auc_resamples: int = 1000
    """`action_auc`: stratified bootstrap replicates of its 95% interval, seeded with `seed`
    (0 = no interval: lo = hi = the point)."""

    def __post_init__(self):
        check(len(self.policies) > 0, "policies must name at least one policy")
        check(len(self.seeds) > 0, "seeds must hold at least one seed")
        check(self.max_turns >= 0 and self.limit >= 0 and self.samples >= 0,
              "max_turns, limit and samples must be >= 0")
        check(self.temperature >= 0.0 and self.max_new_tokens > 0 and self.sql_timeout_s > 0,
              "temperature must be >= 0, max_new_tokens and sql_timeout_s > 0")
        check(self.auc_resamples >= 0, "auc_resamples must be >= 0")
        empty = [k for k, v in self.auc_questions.items() if not v.strip()]
        check(not empty, f"auc_questions: empty question for {empty}")


@dataclass(frozen=True)
class TrackingParams:
    experiment: str = "act"
    """MLflow experiment name; the tracking URI comes from MLFLOW_TRACKING_URI
    (default: sqlite:///mlflow.db in the project)."""
    enabled: bool = True
    """False: stages and flows log nothing to MLflow (also: env ACT_TRACKING=off)."""
    retries: int = 2
    """Prefect retries of a stage that calls an HTTP model API (a role with backend http)."""
    retry_delay_s: float = 30.0
    """Wait between those retries."""
    timeout_s: float = 7200.0
    """Prefect time limit for such a stage; local-only stages run unbounded."""


@dataclass(frozen=True)
class Params:
    seed: int = 0
    dataset: DatasetName = "ambigsql"
    """The dataset the policy is trained and evaluated on."""
    ingest: IngestParams = field(default_factory=IngestParams)
    annotate: AnnotateParams = field(default_factory=AnnotateParams)
    roles: RolesParams = field(default_factory=RolesParams)
    pairs: PairsParams = field(default_factory=PairsParams)
    base: BaseParams = field(default_factory=BaseParams)
    sft: SftParams = field(default_factory=SftParams)
    launch: LaunchParams = field(default_factory=LaunchParams)
    simulate: SimulateParams = field(default_factory=SimulateParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    """Load and check a params file. `overrides` maps dotted keys to values (like `dvc exp -S`)."""
    from act.errors import ParamsError
    from act.params_loader import load_yaml

    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParamsError(f"{p}: not valid UTF-8 at byte {e.start}") from None
    data = load_yaml(text, str(p)) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{p}: expected a mapping of sections, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        apply_override(data, dotted, value)
    try:
        return load_dataclass(Params, data, "")
    except Exception as e:
        from act.errors import ParamsError

        if isinstance(e, ParamsError):
            raise ParamsError(f"{p}: {e}") from None
        raise


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def parse_overrides(items: "list[str] | tuple[str, ...]") -> dict:
    """`-S KEY=VALUE` items -> {dotted key: value}, each value read as YAML (as `dvc exp run -S`
    reads it: "48" is a number, "[1, 2]" a list). A malformed item is a ParamsError naming it
    and its key; values are checked later, by `load_params`."""
    from act.errors import ParamsError, short
    from act.params_loader import load_yaml

    overrides = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not _KEY.fullmatch(key):
            raise ParamsError(f"-S {short(item, 60)}: expected KEY=VALUE with a dotted params key "
                              "(e.g. -S train.beta=0.1)")
        overrides[key] = load_yaml(value, f"-S {key}")  # an error names the key
    return overrides


def apply_override(data: dict, dotted: str, value) -> None:
    """Set `data[a][b][c] = value` for `dotted` "a.b.c"; a ParamsError naming the key when a part
    on the way is a value, not a section (`-S seed.x=1`)."""
    from act.errors import ParamsError

    node = data
    *parents, last = dotted.split(".")
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"{dotted}: {'.'.join(parents[:i + 1])} is a value, not a section with keys")
    node[last] = value


def load_profile(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A run profile (`profiles/<name>.yaml`): dotted params overrides, as `dvc exp run -S` takes
    them. `extends: <name>` first takes the keys of `<name>.yaml` beside it; the file's own keys win."""
    from act.errors import ParamsError, short
    from act.params_loader import load_yaml

    p = Path(path).resolve()
    if p in _seen:
        raise ParamsError(f"{p}: profiles extend each other in a loop: {' -> '.join(s.name for s in (*_seen, p))}")
    if not p.is_file():
        known = ", ".join(sorted(q.stem for q in p.parent.glob("*.yaml"))[:20]) or "none"
        raise ParamsError(f"{path}: no such profile ({p.parent} holds: {known})")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParamsError(f"{p}: not valid UTF-8 at byte {e.start}") from None
    data = load_yaml(text, str(p)) or {}  # strict: a key given twice fails, naming it
    if not isinstance(data, dict):
        raise ParamsError(f"{p}: expected a mapping of dotted params keys, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ParamsError(f"{p}: key {short(key, 60)} is not a dotted params key (e.g. train.beta)")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", base):
        raise ParamsError(f"{p}: extends: {short(base, 60)} is not a profile name")
    parent = p.with_name(f"{base}.yaml")
    if not parent.is_file():
        raise ParamsError(f"{p}: extends: {base!r}, but {parent} does not exist")
    return {**load_profile(parent, (*_seen, p)), **data}
