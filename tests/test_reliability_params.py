"""Issue 23, items 4, 11 and 12: params errors stay small and name the key; numbers are finite,
seeds fit [0, 2**32); `-S` mistakes name the key; profiles load strictly and reach DVC as YAML;
`roles.cache_dir: ~/x` means the home folder."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from act.errors import ParamsError, one_line
from act.params import load_params, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "ACT_TRACKING": "off"}


def _lol(levels: int = 9) -> str:
    """A billion-laughs value, one line of flow YAML: each level is a list of 9 aliases of the
    level below, so ~400 bytes expand to 9**9 strings."""
    value = "&l0 [" + ", ".join(["lol"] * 9) + "]"
    for i in range(1, levels + 1):
        value = f"&l{i} [{value}, " + ", ".join([f"*l{i - 1}"] * 8) + "]"
    return value


def _stage(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A real stage entry point under a 2 GB address-space cap (an unbounded error message would
    hit it rather than the machine)."""
    code = ("import resource, sys, runpy; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "sys.argv = ['stages.ingest', *sys.argv[1:]]; runpy.run_module('stages.ingest', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=300)


def _one_error_line(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 1, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("where", ["file", "override"])
def test_a_yaml_alias_bomb_gives_a_short_error(tmp_path, where):
    """344 bytes of aliases used to give a 351 MB message (repr of the expanded value), then a
    MemoryError traceback."""
    text = PARAMS.read_text()
    assert "\nseed: 0 " in text
    if where == "file":
        (tmp_path / "params.yaml").write_text(text.replace("\nseed: 0 ", f"\nseed: {_lol()} ", 1))
        args = ["--params", "params.yaml"]
    else:
        (tmp_path / "params.yaml").write_text(text)
        args = ["--params", "params.yaml", "-S", f"seed={_lol()}"]
    line = _one_error_line(_stage(*args, "--dataset", "custom", "--raw", "x.jsonl", "--out", "o", "--metrics", "m.json", cwd=tmp_path))
    assert len(line) < 600 and ("expands to over" in line or "seed" in line), line


def test_every_value_error_is_bounded():
    deep = [list(range(1000))] * 1000
    with pytest.raises(ParamsError) as e:
        load_params(PARAMS, {"seed": deep})
    assert len(str(e.value)) < 300 and str(e.value).startswith(f"{PARAMS}: seed:")
    with pytest.raises(ParamsError) as e:
        load_params(PARAMS, {"dataset": "x" * 10_000_000})
    assert len(str(e.value)) < 400 and "dataset" in str(e.value)


@pytest.mark.parametrize("key", ["roles.annotator.timeout_s", "evaluate.sql_timeout_s", "train.learning_rate",
                                 "simulate.temperature"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 10**400])
def test_numbers_must_be_finite(key, value):
    """`.inf` passed every "> 0" rule: an HTTP role's deadline thread crashed on it and every
    execution match raised."""
    with pytest.raises(ParamsError, match=rf"{key}: .*(not a finite number|not a number|too large)"):
        load_params(PARAMS, {key: value})


@pytest.mark.parametrize("override, ok", [
    ({"seed": 0}, True), ({"seed": 2**32 - 1}, True), ({"seed": 2**32}, False), ({"seed": 2**64}, False),
    ({"seed": -1}, False), ({"evaluate.seeds": [0, 2**32]}, False), ({"evaluate.seeds": [0, 1, 2]}, True),
])
def test_seeds_lie_in_0_to_2_32(override, ok):
    """torch refuses seeds >= 2**64, numpy's legacy seeding >= 2**32."""
    if ok:
        load_params(PARAMS, override)
    else:
        (key,) = override
        with pytest.raises(ParamsError, match=rf"{key}(\[\d\])?: a seed must be an integer in \[0, 2\*\*32\)"):
            load_params(PARAMS, override)


@pytest.mark.parametrize("item, named", [
    ("seed.x=1", "seed.x: seed is a value, not a section"),
    ("seed=[1", "-S seed: invalid YAML"),
    ("train.beta=[1, {", "-S train.beta: invalid YAML"),
    ("=1", "-S '=1': expected KEY=VALUE"),
    ("seed", "-S 'seed': expected KEY=VALUE"),
])
def test_a_malformed_override_names_its_key(tmp_path, item, named):
    """They used to end in a TypeError or a YAML error naming no key."""
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    line = _one_error_line(_stage("-S", item, "--dataset", "custom", "--raw", "x.jsonl", "--out", "o", "--metrics", "m.json", cwd=tmp_path))
    assert named in line and len(line) < 600, line
    with pytest.raises(ParamsError, match="seed|beta|KEY=VALUE"):
        load_params(PARAMS, parse_overrides([item]))


# ------------------------------------------------------------------------------ profiles
def _profile_args(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "p.yaml").write_text(text)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "profile_args.py"), str(tmp_path / "p.yaml"), *extra],
                          env=ENV, capture_output=True, text=True, timeout=120)


def test_a_profile_with_a_duplicate_key_is_one_error_line(tmp_path):
    out = _profile_args(tmp_path, "train.beta: 0.1\nsft.epochs: 2\ntrain.beta: 0.5\n")
    line = _one_error_line(out)
    assert "key 'train.beta' appears twice" in line and "p.yaml" in line


def test_a_profile_with_bad_yaml_or_a_missing_parent_is_one_error_line(tmp_path):
    assert "invalid YAML" in _one_error_line(_profile_args(tmp_path, "train.beta: [0.1\n"))
    assert "extends: 'nope'" in _one_error_line(_profile_args(tmp_path, "extends: nope\n"))
    assert "expands to over" in _one_error_line(_profile_args(tmp_path, f"seed: {_lol()}\n"))


def test_profile_values_reach_dvc_as_yaml(tmp_path):
    """`null` used to reach DVC as the string None, lists as Python reprs."""
    out = _profile_args(tmp_path, "base.chat_template: null\nevaluate.policies: [sft, act]\nsft.epochs: 2\n"
                                  "train.gradient_checkpointing: true\nbase.model: 'yes'\n", "ambigsql")
    assert out.returncode == 0, out.stderr
    model, *items = out.stdout.splitlines()
    assert model == "yes"
    assert items == ["base.chat_template=null", "evaluate.policies=[sft, act]", "sft.epochs=2",
                     "train.gradient_checkpointing=true", "base.model='yes'", "dataset=ambigsql"]
    import yaml

    assert [yaml.safe_load(i.partition("=")[2]) for i in items] == [None, ["sft", "act"], 2, True, "yes", "ambigsql"]


def _fake_checkout(tmp_path: Path) -> Path:
    """A checkout where scripts/profile.sh runs for real but `dvc` only records its arguments:
    the venv stamp setup.sh checks, a python that is this interpreter, a stub dvc."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("profile.sh", "setup.sh", "env.sh", "profile_args.py"):
        (repo / "scripts" / name).write_bytes((ROOT / "scripts" / name).read_bytes())
    for name in ("pyproject.toml", "constraints.txt"):
        (repo / name).write_bytes((ROOT / name).read_bytes())
    (repo / "act").symlink_to(ROOT / "act")
    (repo / "profiles").mkdir()
    extras = "test" if os.environ.get("ACT_NO_QLORA", "0") == "1" else "test,qlora"
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes()
                           + f"{extras}\n".encode()).hexdigest()[:16]
    bin_ = repo / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (repo / ".venv" / f".installed-{stamp}").touch()
    (bin_ / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_ / "dvc").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$(dirname "$0")/../../dvc-args"\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    return repo


def test_profile_sh_passes_yaml_and_stops_on_a_bad_profile(tmp_path):
    repo = _fake_checkout(tmp_path)
    (repo / "profiles" / "p.yaml").write_text("base.chat_template: null\nevaluate.policies: [sft, act]\n")
    env = {**ENV, "PATH": f"{repo / '.venv' / 'bin'}:{os.environ['PATH']}"}
    ok = subprocess.run(["bash", "scripts/profile.sh", "p"], cwd=repo, env=env, capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (repo / "dvc-args").read_text().splitlines() == [
        "exp", "run", "-S", "base.chat_template=null", "-S", "evaluate.policies=[sft, act]"]
    (repo / "dvc-args").unlink()
    (repo / "profiles" / "p.yaml").write_text("sft.epochs: 2\nsft.epochs: 3\n")
    bad = subprocess.run(["bash", "scripts/profile.sh", "p"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and not (repo / "dvc-args").exists()  # it used to run dvc without the profile
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "appears twice" in bad.stderr


# ------------------------------------------------------------------------------ roles.cache_dir
def test_cache_dir_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
    """`roles.cache_dir: ~/x` used to create a folder named `~` in the project."""
    from act.roles import build_role

    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.chdir(project)
    params = load_params(PARAMS, {"roles.cache_dir": "~/x", "roles.classifier.backend": "http",
                                  "roles.classifier.base_url": "http://127.0.0.1:9/v1",
                                  "roles.classifier.model": "m"})
    build_role("classifier", params.roles)
    assert (home / "x" / "calls.sqlite").is_file()
    assert list(project.iterdir()) == []


def test_one_line_caps_any_message():
    line = one_line(ValueError("x" * 10_000_000))
    assert len(line) <= 2000
