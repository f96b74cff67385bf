"""The product path on a CUDA GPU, as one command: writes gpu_check.json and gpu_check.log to --out.

    python benchmarks/gpu_check.py --out benchmarks/out/gpu            # CUDA: full sizes (~5 min on an H200)
    python benchmarks/gpu_check.py --out /tmp/gpu --cpu-tiny           # CPU (or no CUDA): tiny sizes, for CI

Phases, most important first (each one's result is written to the JSON as soon as it ends, so a
run cut short still reports what it did):

1. `gpu_tests`: the `gpu`-marked tests (pytest -m gpu on the files that have them); every test's
   outcome. On the CPU they all skip.
2. `recipe_7b`: profiles/zephyr-24gb.yaml measured (benchmarks/gpu_recipe.py): a random-weight
   Mistral-7B through the project's base, sft and train stages and one evaluate generation batch,
   at the profile's settings (nf4, bf16, batch 4, max_length 1,536 filled, gradient checkpointing,
   paged_adamw_8bit, on-policy sampling). Per phase: peak allocated / reserved CUDA memory, step
   time, training tokens/s, sampling tokens/s. Tiny sizes on the CPU.
3. `templates`: the template matrix (tests/test_templates.py's tiny models of the Zephyr,
   Mistral, ChatML, Llama-3 and Gemma formats) through base -> sft -> train (4 on-policy steps) ->
   evaluate, on CUDA with nf4, dtype auto, gradient checkpointing and paged_adamw_8bit (on the CPU:
   unquantized fp32 with adamw_torch, bitsandbytes' optimizers being CUDA-only).

No MLflow, Prefect or DVC is needed (tracking is switched off; the stages' `run` functions are
called directly), so it runs where only torch, transformers, trl, peft, datasets and bitsandbytes
are installed: `scripts/gpu_bundle.sh` builds those as wheels for a machine without network.
Exit status 0 when every phase passed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = ("gpu_tests", "recipe_7b", "templates")
FAMILIES = ("zephyr", "mistral", "chatml", "llama3", "gemma")
GPU_24GB_GIB = 23.99  # what a 24 GB card (RTX 3090/4090, A10, L4) reports as total memory

log = logging.getLogger("gpu_check")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="folder for gpu_check.json and gpu_check.log")
    p.add_argument("--cpu-tiny", action="store_true", help="tiny sizes on the CPU (automatic without CUDA)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--families", default=",".join(FAMILIES), help="template families of the templates phase")
    p.add_argument("--budget-s", type=float, default=0,
                   help="stop starting new work after this many seconds (0 = no limit); partial results stay")
    p.add_argument("--cap-gib", type=float, default=GPU_24GB_GIB,
                   help="GPU memory the recipe's phases may use, CUDA context included, as on a card of this size "
                        f"(default {GPU_24GB_GIB}: a 24 GB GPU; 0 = no cap). Over it a phase is run again uncapped")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ output
class Report:
    """The JSON result, rewritten atomically after every phase; the log beside it."""

    def __init__(self, out: Path, data: dict[str, Any]):
        self.path, self.data = out / "gpu_check.json", data

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def setup_logging(out: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.FileHandler(out / "gpu_check.log", encoding="utf-8"), logging.StreamHandler()):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.captureWarnings(True)
    for noisy in ("httpx", "urllib3", "datasets", "bitsandbytes", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
                            "torch": torch.__version__, "torch_cuda": torch.version.cuda}
    for pkg in ("transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "tokenizers",
                "huggingface_hub", "safetensors"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        torch.zeros(1, device="cuda")  # create the context, then measure what it holds
        free, total = torch.cuda.mem_get_info()
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                    capability=list(torch.cuda.get_device_capability(0)), gpu_total_gib=round(total / 2**30, 2),
                    cuda_context_gib=round((total - free - torch.cuda.memory_reserved()) / 2**30, 3))
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            info["driver"] = smi.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


# ------------------------------------------------------------------------------------ phase 1
GPU_MARK = re.compile(r"^\s*(@pytest\.mark\.gpu\b|pytestmark\s*=.*\bgpu\b)", re.M)


def gpu_test_files() -> list[str]:
    """The test files holding `gpu`-marked tests (only those are collected: the others import
    libraries, such as MLflow and Prefect, that a bare GPU machine may lack)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if GPU_MARK.search(p.read_text(encoding="utf-8")))


def junit_outcomes(xml_path: Path) -> dict[str, dict[str, str]]:
    """{test id: {"outcome": passed|failed|error|skipped, "message": ...}} from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    out: dict[str, dict[str, str]] = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or "")[:500]
                break
        out[name] = {"outcome": outcome, "message": message} if message else {"outcome": outcome}
    return out


def run_gpu_tests(rec: dict[str, Any], work: Path, cuda: bool) -> None:
    files = gpu_test_files()
    xml = work / "junit.xml"
    cmd = [sys.executable, *(["-S"] if sys.flags.no_site else []), "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "-q", "-rA",
           f"--junitxml={xml}", *files]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    log.info("pytest -m gpu (exit %d):\n%s%s", proc.returncode, proc.stdout[-20000:], proc.stderr[-5000:])
    rec.update(files=files, exit_code=proc.returncode)
    tests = junit_outcomes(xml) if xml.exists() else {}
    rec["tests"] = tests
    counts = {k: sum(t["outcome"] == k for t in tests.values()) for k in ("passed", "failed", "error", "skipped")}
    rec.update(counts)
    bad = counts["failed"] + counts["error"] or (proc.returncode not in (0, 5) and not tests)
    rec["status"] = "failed" if bad or (cuda and counts["passed"] == 0) else "ok"


# ------------------------------------------------------------------------------------ phase 3
def template_overrides(cuda: bool) -> dict[str, Any]:
    """tests/test_templates.py's sizes, with 4 on-policy steps; on CUDA the QLoRA knobs."""
    over = {"sft.epochs": 1, "sft.batch_size": 4, "sft.max_length": 512, "simulate.max_new_tokens": 8,
            "train.max_steps": 4, "train.batch_size": 2, "train.max_length": 512, "evaluate.max_new_tokens": 8,
            "evaluate.limit": 3, "sft.gradient_checkpointing": True, "train.gradient_checkpointing": True,
            "sft.dtype": "auto", "train.dtype": "auto", "sft.save_steps": 0, "train.save_steps": 0}
    knobs = ({"quantization": "nf4", "optim": "paged_adamw_8bit"} if cuda
             else {"quantization": "none", "optim": "adamw_torch"})
    for section in ("sft", "train"):
        over.update({f"{section}.{k}": v for k, v in knobs.items()})
    return over


def run_family(family: str, work: Path, cuda: bool) -> dict[str, Any]:
    import gpu_meter as meter

    from act.io import save_dataset
    from act.pairs import build_pairs
    from act.params import RolesParams, load_params
    from act.roles import build_role
    from stages import base, evaluate, sft, train
    from tests.chat_families import build_family
    from tests.test_templates import DB, records

    d = work / family
    train_recs, eval_recs = records("train", 8), records("eval", 3)
    save_dataset(d / "annotate", {"train": [r.to_row() for r in train_recs], "eval": [r.to_row() for r in eval_recs]})
    pairs, _ = build_pairs(train_recs, build_role("rejecter", RolesParams()))
    save_dataset(d / "pairs", {"train": pairs})
    params = load_params(ROOT / "params.yaml", {"base.model": str(build_family(family, d / "model")),
                                                **template_overrides(cuda)})
    rec: dict[str, Any] = {}
    with meter.phase(rec):
        b = base.run(params, data=d / "annotate", out=d / "base", metrics_path=d / "m" / "base.json")
        s = sft.run(params, base=d / "base", data=d / "annotate", out=d / "sft", metrics_path=d / "m" / "sft.json",
                    checkpoint_dir=d / "ckpt_sft")
        t = train.run(params, base=d / "base", sft=d / "sft", pairs_dir=d / "pairs", simulated=d / "unused",
                      databases=DB, out=d / "act", log_dir=d / "log", metrics_path=d / "m" / "train.json",
                      checkpoint_dir=d / "ckpt_train")
        e = evaluate.run(params, data=d / "annotate", base=d / "base",
                         adapters={"sft": str(d / "sft"), "act": str(d / "act")}, databases=DB,
                         train_log=d / "log" / "log.jsonl", out=d / "pred", metrics_path=d / "m" / "evaluate.json",
                         plots_dir=d / "plots", report=d / "report.html")
    rec.update(fold_system=b["fold_system"], sft_steps=s["steps"], sft_loss_first=s["loss_first"],
               train_steps=t["steps"], sampling_rounds=t["sampling_rounds"], train_loss=t["train_loss"],
               evaluated={name: m["action"]["n"] for name, m in e.items()})
    ok = (s["steps"] >= 1 and t["steps"] == 4 and t["sampling_rounds"] >= 4
          and set(e) == {"base", "sft", "act"} and all(m["action"]["n"] == 3 for m in e.values()))
    rec["status"] = "ok" if ok else "failed"
    return rec


def run_templates(rec: dict[str, Any], work: Path, cuda: bool, families: list[str], report: Report,
                  time_left) -> None:
    rec["settings"] = template_overrides(cuda)
    fams = rec.setdefault("families", {})
    for family in families:
        if time_left() < 25:
            fams[family] = {"status": "skipped", "reason": "time budget"}
            continue
        log.info("templates: %s", family)
        try:
            fams[family] = run_family(family, work / "templates", cuda)
        except Exception as e:  # one family's failure must not hide the others'
            log.exception("templates: %s failed", family)
            fams[family] = {"status": "error", "error": one_line(e)}
        report.save()
    statuses = {f["status"] for f in fams.values()}
    rec["status"] = "ok" if statuses == {"ok"} else "partial" if "ok" in statuses else "failed"


# ------------------------------------------------------------------------------------ phase 2
def run_recipe(rec: dict[str, Any], work: Path, cuda: bool, report: Report, time_left, cap_gib: float) -> None:
    import gpu_recipe

    sizes = gpu_recipe.Sizes() if cuda else gpu_recipe.Sizes.tiny()
    context = report.data["machine"].get("cuda_context_gib", 0.0)
    cap = round(cap_gib - context, 3) if cuda and cap_gib else None  # what torch's allocator may hold
    gpu_recipe.run(work / "recipe", sizes, rec, report.save, time_left, cap_gib=cap)
    if cuda:  # a phase fits when its peak, plus the CUDA context, stays within a 24 GB card
        rec["fits_24gb"] = {ph: "oom_at_cap_gib" not in rec[ph] and rec[ph]["peak_reserved_gib"] + context <= GPU_24GB_GIB
                            for ph in ("sft", "train", "evaluate") if "peak_reserved_gib" in rec.get(ph, {})}
    shutil.rmtree(work / "recipe" / "weights", ignore_errors=True)  # 14 GiB of random weights


def scratch_parent() -> str:
    """The temporary folder with the most free space (the 7B run writes 13.5 GiB of weights there)."""
    candidates = [c for c in (tempfile.gettempdir(), "/var/tmp") if os.path.isdir(c)
                  and os.access(c, os.W_OK)]
    return max(candidates, key=lambda c: shutil.disk_usage(c).free)


def one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:1000]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    setup_logging(args.out)
    for key, value in (("ACT_TRACKING", "off"), ("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("MLFLOW_DISABLE_TELEMETRY", "true")):
        os.environ.setdefault(key, value)
    os.environ["ACT_TRACKING"] = "off"
    for path in (str(HERE), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import torch

    cuda = torch.cuda.is_available() and not args.cpu_tiny
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise SystemExit(f"--phases: unknown {unknown}; expected some of {','.join(PHASES)}")
    started = time.monotonic()

    def time_left() -> float:
        return args.budget_s - (time.monotonic() - started) if args.budget_s else float("inf")

    report = Report(args.out, {"mode": "cuda" if cuda else "cpu-tiny", "argv": sys.argv[1:] if argv is None else argv,
                               "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "machine": machine_info(), "phases": {}})
    report.save()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_", dir=scratch_parent()))
    work.mkdir(parents=True, exist_ok=True)
    report.data["work"] = {"path": str(work), "free_gib": round(shutil.disk_usage(work).free / 2**30, 1)}
    runners = {
        "gpu_tests": lambda rec: run_gpu_tests(rec, work, cuda),
        "recipe_7b": lambda rec: run_recipe(rec, work, cuda, report, time_left, args.cap_gib),
        "templates": lambda rec: run_templates(rec, work, cuda, args.families.split(","), report, time_left),
    }
    try:
        for name in phases:
            rec = report.data["phases"].setdefault(name, {})
            if time_left() < 20:
                rec.update(status="skipped", reason="time budget")
                continue
            log.info("phase %s", name)
            t0 = time.perf_counter()
            try:
                runners[name](rec)
                rec.setdefault("status", "ok")
            except Exception as e:
                log.exception("phase %s failed", name)
                rec.update(status="error", error=one_line(e), traceback=traceback.format_exc()[-4000:])
            rec["phase_seconds"] = round(time.perf_counter() - t0, 2)
            report.save()
    finally:
        report.data["seconds"] = round(time.monotonic() - started, 1)
        report.data["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        report.save()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    statuses = {name: report.data["phases"][name].get("status") for name in phases}
    log.info("gpu_check: %s in %.0fs -> %s", statuses, report.data["seconds"], report.path)
    return 0 if all(s == "ok" for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
