"""Model roles besides the policy: action classifier, user simulator, rejected-response
generator, action annotator. Each is a Protocol (`act.roles.base`) with offline, HTTP and local
backends; `act.roles.build_role(name, params)` picks one from `params.yaml`'s `roles` section.

    from act.roles import build_role
    classifier = build_role("classifier", params.roles, usage=counter)
    classifier.classify([ClassifyItem("ambigsql", messages, "SELECT ...")])  # -> [Action.ANSWER]

Backends (`roles.<name>.backend`):
- offline: deterministic, no model (`act.roles.offline`);
- http: any OpenAI-compatible chat-completions endpoint (`act.roles.http`), cached on disk;
- local: a transformers model from a path or hub name (`act.roles.local`), cached on disk.
The http and local backends share the prompt files in `act/prompts/` (`act.roles.prompted`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from act.roles.base import UsageCounter

if TYPE_CHECKING:
    from act.params import RolesParams

ROLE_NAMES = ("classifier", "simulator", "rejecter", "annotator")


def cache_path(cache_dir: str) -> Path:
    """`roles.cache_dir` as a path: `~` and `~user` are the home folder, as in a shell (not a
    folder named `~` in the project); `$VARS` are expanded too."""
    return Path(os.path.expandvars(os.path.expanduser(cache_dir)))


def build_role(name: str, roles: "RolesParams", *, usage: UsageCounter | None = None):
    """The configured backend for role `name` (one of ROLE_NAMES).

    Returns an ActionClassifier (classifier, annotator), a UserSimulator (simulator) or a
    RejectedGenerator (rejecter). `usage` accumulates the calls and tokens the role spends."""
    if name not in ROLE_NAMES:
        raise ValueError(f"unknown role {name!r}; expected one of {ROLE_NAMES}")
    cfg = getattr(roles, name)
    usage = usage if usage is not None else UsageCounter()
    if cfg.backend == "offline":
        from act.roles import offline

        cls = {
            "classifier": offline.SurfaceClassifier,
            "annotator": offline.SurfaceClassifier,
            "simulator": offline.OracleSimulator,
            "rejecter": offline.TemplateRejecter,
        }[name]
        return cls(usage=usage)
    if cfg.backend not in ("http", "local"):  # the params loader rejects these; a hand-built RoleParams may not
        raise ValueError(f"roles.{name}.backend: unknown backend {cfg.backend!r}")
    from act.roles.cache import CallCache
    from act.roles.prompted import build_prompted

    cache = CallCache.open(cache_path(roles.cache_dir)) if roles.cache_dir else None
    if cfg.backend == "http":
        from act.roles.http import HttpChat

        chat = HttpChat(cfg, role=name, cache=cache, usage=usage)
    else:
        from act.roles.local import LocalChat

        chat = LocalChat(cfg, role=name, cache=cache, usage=usage)
    return build_prompted(name, chat, prompt=cfg.prompt, usage=usage)
