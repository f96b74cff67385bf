#!/usr/bin/env bash
# Build the wheel bundle a bare CUDA machine needs to run benchmarks/gpu_check.py, without network.
#
#     bash scripts/gpu_bundle.sh [DEST]        # DEST defaults to .whl/ at the repo root (git-ignored)
#
# The target is a Python 3.12 x86-64 Linux machine that already has torch (CUDA 13), accelerate,
# numpy, pandas, pyarrow, safetensors, tokenizers, huggingface-hub, pytest (e.g. the H200 image of
# this workplace), but not trl, datasets, bitsandbytes or gguf. Then, on that machine:
#
#     python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
#     PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_check.py --out results/
#
# bitsandbytes ships one library per CUDA version (43 MiB); it is repacked with
# libbitsandbytes_cuda130.so only (about 4 MiB; set BNB_CUDA=cuda128 etc. for another CUDA), its
# RECORD rewritten so pip installs it. Then every wheel's requirements are checked against the
# bundle plus the packages the target image has, and the bundle plus the source tree that travels
# with it (this checkout's tracked and untracked-not-ignored files, and those of an enclosing
# checkout) against the 64 MiB budget (GPU_BUNDLE_BUDGET_MIB). Exit codes: 0 ok, 3 the download
# failed (no network), 4 over budget, 5 a requirement is neither bundled nor on the target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.whl}"
BNB_CUDA="${BNB_CUDA:-cuda130}"
BUDGET_MIB="${GPU_BUNDLE_BUDGET_MIB:-64}"
PY="${PYTHON:-python3}"

# What the target lacks (or has in a version this project was not tested with). Pinned to the
# versions pyproject.toml / the CI venv use; dill and multiprocess are datasets' own pins.
WHEELS=(
  "trl==1.16.*" "datasets==5.2.*" "dill==0.4.1" "multiprocess==0.70.19" "transformers==5.24.*"
  "peft==0.21.*" "gguf==0.19.*" "bitsandbytes==0.50.2"
  "regex==2026.11.19"   # transformers 5.24 checks regex>=2025.10.22 at import
  "fsspec==2026.9.0"    # datasets 5.2 wants fsspec<=2026.9.0
)
# Present on the target image (KINDS.md of the device docs): requirements these satisfy are fine.
TARGET_HAS="accelerate filelock fsspec huggingface-hub huggingface_hub jinja2 numpy packaging pandas psutil pyarrow
pyyaml requests safetensors tokenizers torch tqdm typer typing-extensions xxhash regex"

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "gpu_bundle: downloading ${#WHEELS[@]} wheels into $DEST"
if ! "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$tmp/dl" "${WHEELS[@]}" 2>"$tmp/pip.err"; then
  echo "gpu_bundle: pip download failed (no network to the package index?):" >&2
  grep -v "^WARNING: Location" "$tmp/pip.err" | tail -5 >&2
  exit 3
fi

# Repack bitsandbytes: keep one native library, drop the rest from the archive and its RECORD.
"$PY" - "$tmp/dl" "$DEST" "$BNB_CUDA" <<'EOF'
import pathlib, shutil, sys, zipfile

src, dest, keep = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), f"libbitsandbytes_{sys.argv[3]}.so"
for whl in sorted(src.glob("*.whl")):
    if not whl.name.startswith("bitsandbytes-"):
        shutil.copy2(whl, dest / whl.name)
        continue
    with zipfile.ZipFile(whl) as zin:
        names = zin.namelist()
        if not any(n.endswith("/" + keep) for n in names):
            sys.exit(f"gpu_bundle: {whl.name} has no {keep}")
        drop = {n for n in names if n.rsplit("/", 1)[-1].startswith("libbitsandbytes_") and not n.endswith("/" + keep)}
        with zipfile.ZipFile(dest / whl.name, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                if info.filename in drop:
                    continue
                data = zin.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines()
                    data = ("\n".join(ln for ln in lines if ln.split(",", 1)[0] not in drop) + "\n").encode()
                zout.writestr(info, data)
    print(f"gpu_bundle: {whl.name}: kept {keep}, dropped {len(drop)} other native libraries "
          f"({whl.stat().st_size / 2**20:.1f} -> {(dest / whl.name).stat().st_size / 2**20:.1f} MiB)")
EOF

# Every requirement (extras aside) must be bundled or on the target.
"$PY" - "$DEST" "$TARGET_HAS" <<'EOF'
import pathlib, re, sys, zipfile

dest, has = pathlib.Path(sys.argv[1]), set(sys.argv[2].split())
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
bundled = {norm(w.name.split("-")[0]) for w in dest.glob("*.whl")}
has = {norm(n) for n in has}
missing = []
for whl in sorted(dest.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line:
                name = norm(re.match(r"Requires-Dist:\s*([A-Za-z0-9_.\-]+)", line).group(1))
                if name not in bundled and name not in has:
                    missing.append(f"{whl.name}: {line.split(':', 1)[1].strip()}")
if missing:
    print("gpu_bundle: requirements neither bundled nor on the target:\n  " + "\n  ".join(missing), file=sys.stderr)
    sys.exit(5)
print(f"gpu_bundle: requirements of {len(bundled)} wheels are bundled or on the target")
EOF

# Size: the bundle plus the tree that travels with it.
tree_bytes() {  # tracked + untracked-not-ignored files of the checkout at $1
  (cd "$1" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null \
    | awk '{s+=$1} END {print s+0}')
}
whl=$(find "$DEST" -name '*.whl' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
tree=0
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  tree=$(tree_bytes "$ROOT")
  outer="$(git -C "$ROOT/.." rev-parse --show-toplevel 2>/dev/null || true)"
  if [ -n "$outer" ] && [ "$outer" != "$ROOT" ]; then  # a worktree carried inside another checkout
    tree=$((tree + $(tree_bytes "$outer")))
  fi
fi
total=$((whl + tree))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
echo "gpu_bundle: wheels $(mib "$whl") MiB + source tree $(mib "$tree") MiB = $(mib "$total") MiB (budget $BUDGET_MIB MiB)"
ls -1 "$DEST"
if [ "$total" -gt $((BUDGET_MIB * 1048576)) ]; then
  echo "gpu_bundle: over the $BUDGET_MIB MiB budget" >&2
  exit 4
fi
