#!/usr/bin/env bash
# Create .venv and install the project with its test extras. Needs only python3 and a package
# registry. Idempotent: skips the install when pyproject.toml and constraints.txt are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=.venv
# [qlora] (bitsandbytes) is installed for the nf4 tests; ACT_NO_QLORA=1 leaves it out (they skip).
extras=test
[ "${ACT_NO_QLORA:-0}" = 1 ] || extras="$extras,qlora"
stamp="$VENV/.installed-$({ cat pyproject.toml constraints.txt; echo "$extras"; } | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then exit 0; fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade uv >/dev/null

# uv ignores pip's configuration: pass pip's find-links (a local folder of wheels, e.g. a CPU
# build of torch) on to it when there is one. Elsewhere the pinned torch resolves from the index.
links=()
for key in global.find-links install.find-links; do
  for loc in $("$VENV/bin/python" -m pip config get "$key" 2>/dev/null || true); do
    [ -e "$loc" ] && links+=(--find-links "$loc")
  done
done
# --compile-bytecode: without .pyc files every process recompiles what it imports (about twice
# the import CPU time of a model stage).
"$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$VENV/bin/python" "${links[@]}" \
  -c constraints.txt -e ".[$extras]"
# uv compiles only what it installs: also compile what an older install of this venv left as source
"$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" >/dev/null || true
rm -f "$VENV"/.installed-*
touch "$stamp"
