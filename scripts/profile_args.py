"""The `-S key=value` items of a run profile, for scripts/profile.sh (one per line on stdout).

    python scripts/profile_args.py profiles/smollm2.yaml [DATASET]

Line 1 is the `base.model` the profile names (empty if none), the rest are the items. Each value
is written back as one-line YAML, the way `dvc exp run -S` and `act ablate -S` read it: `null`
stays null, a list stays a list, "yes" stays a string. The profile goes through the strict loader
(a key given twice fails, naming it); any error is one `error: ...` line on stderr, exit 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def yaml_value(value) -> str:
    """`value` as one line of YAML."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), allow_unicode=True)
    text = text.removesuffix("\n").removesuffix("\n...")
    if "\n" in text:
        raise ValueError("the value does not fit on one line")
    return text


def profile_args(profile: str, dataset: str = "") -> list[str]:
    from act.errors import ParamsError
    from act.params import load_profile

    over = load_profile(profile)
    if dataset:
        over["dataset"] = dataset
    items = []
    for key, value in over.items():
        try:
            items.append(f"{key}={yaml_value(value)}")
        except ValueError as e:
            raise ParamsError(f"{profile}: {key}: {e}") from None
    model = over.get("base.model")
    return [model if isinstance(model, str) and "\n" not in model else "", *items]


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    print("\n".join(profile_args(argv[0], argv[1] if len(argv) > 1 else "")))


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(lambda: main(sys.argv[1:]))
