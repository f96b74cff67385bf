"""Strict loading of YAML into frozen dataclasses.

Unknown keys, missing keys, values of the wrong type and numbers out of range fail with a
`ParamsError` that names the full dotted key (e.g. ``train.lora.r``). Supported field types: str,
int, float, bool, Literal, Optional[...], list[...], dict[str, ...] and nested dataclasses.

Ranges, by field name, for every section at once: a number named in `POSITIVE` (sizes, lengths,
learning rates, time limits) must be > 0; any other number must be >= 0, except those in `SIGNED`
(`max_steps: -1` means "no cap"). A section's own `__post_init__` adds finer checks.
YAML with a key given twice in one mapping is refused (`load_yaml`): the last one would win silently.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, Union

import math

from act.errors import ParamsError, short

_MISSING = dataclasses.MISSING

_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""A number in exponent form such as 2e-4 or 5E+3: YAML 1.2 and DVC read it as a float, PyYAML
(YAML 1.1, which needs a dot: 2.0e-4) as a string; float fields accept it."""

POSITIVE = frozenset({
    "learning_rate", "batch_size", "epochs", "gradient_accumulation_steps", "max_length", "max_new_tokens",
    "max_tokens", "max_prompt_tokens", "max_context_chars", "timeout_s", "query_timeout_s", "sql_timeout_s",
    "vocab_size", "hidden_size", "layers", "heads", "max_positions", "block_size", "concurrency", "sample_every",
    "generation_batch_size",
    "beta", "r", "alpha",
})
"""Numeric fields that must be > 0, whatever section they are in."""
SIGNED = frozenset({"max_steps", "data_seed"})
"""Numeric fields that may be negative."""
SEEDS = frozenset({"seed", "seeds"})
"""Seed fields: integers in [0, 2**32) (numpy's and torch's CUDA generators take no more)."""
SEED_LIMIT = 2**32
MAX_YAML_NODES = 100_000
"""A params or profile YAML may expand (aliases counted at every use) to this many nodes at most."""


def check_range(name: str, value: Any, key: str) -> None:
    """The generic range rule above for field `name` (dotted `key` for the message)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):  # NaN, .inf
            raise ParamsError(f"{key}: {short(v)} is not {'a' if v != v else 'a finite'} number")
        if name == "data_seed" and not -1 <= v < SEED_LIMIT:
            raise ParamsError(f"{key}: a seed must be an integer in [0, 2**32), or -1 for the run's seed; got {short(v)}")
        if name in SEEDS and not 0 <= v < SEED_LIMIT:
            raise ParamsError(f"{key}: a seed must be an integer in [0, 2**32), got {short(v)}")
        if name in POSITIVE and v <= 0:
            raise ParamsError(f"{key}: must be > 0, got {short(v)}")
        if name not in POSITIVE and name not in SIGNED and v < 0:
            raise ParamsError(f"{key}: must be >= 0, got {short(v)}")


def load_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load`, but a key given twice in one mapping is a ParamsError naming it and its line."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise ParamsError(f"{source}: key {short(key)} appears twice in one mapping (lines {seen[key] + 1} "
                                  f"and {key_node.start_mark.line + 1}); the last one would win silently")
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        loader = StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            expanded = _expanded_nodes(node)
            if expanded > MAX_YAML_NODES:
                raise ParamsError(f"{source}: the YAML expands to over {MAX_YAML_NODES} values (aliases "
                                  "counted at each use); refusing it")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ParamsError(f"{source}: invalid YAML: {' '.join(str(e)[:2000].split())[:300]}") from None
    except RecursionError:
        raise ParamsError(f"{source}: the YAML is nested too deeply") from None


def _expanded_nodes(root) -> int:
    """How many nodes `root` has once every alias is expanded (memoized, so a billion-laughs
    document is counted in a moment, not expanded); a recursive alias counts as too many."""
    import yaml

    sizes: dict[int, float] = {}

    def size(node) -> float:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = math.inf  # a node that contains itself
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(n) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        sizes[id(node)] = total
        return total

    return size(root)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(value: Any, tp: Any, key: str) -> Any:
    """Check/convert `value` to the annotated type `tp`; `key` is the dotted name for errors."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, key)
            except ParamsError as e:
                errors.append(str(e))
        raise ParamsError(f"{key}: {short(value)} does not match {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ParamsError(f"{key}: {short(value)} is not one of {list(allowed)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__} {short(value)}")
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        return tuple(convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__}")
        kt, vt = typing.get_args(tp) or (str, Any)
        return {convert(k, kt, key): convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return load_dataclass(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true/false, got {short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {short(value)}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads 2e-4, without a dot, as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: expected a number, got {short(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise ParamsError(f"{key}: {short(value)} is too large for a number") from None
        if not math.isfinite(number):
            raise ParamsError(f"{key}: {short(value)} is not {'a' if number != number else 'a finite'} number")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {short(value)}")
        return value
    raise TypeError(f"{key}: unsupported annotation {tp!r}")


def load_dataclass(cls: type, data: Any, key: str) -> Any:
    """Build dataclass `cls` from mapping `data`; every key is checked, unknown keys fail."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{key}: expected a mapping, got {type(data).__name__} {short(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"{key}: unknown key(s) {', '.join(f'{key}.{str(u)[:60]}' for u in unknown[:5])}; "
            f"known: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            kwargs[name] = convert(data[name], hints[name], sub)
            check_range(name, kwargs[name], sub)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ParamsError(f"{sub}: missing required key")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError, ArithmeticError) as e:  # __post_init__ checks
        raise ParamsError(f"{key}: {e}") from None
    return obj


def check(condition: bool, message: str) -> None:
    """For `__post_init__` range checks: raises ValueError, reported with the section's key."""
    if not condition:
        raise ValueError(message)
