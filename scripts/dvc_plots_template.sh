#!/usr/bin/env bash
# Rebuild configs/dvc-plots.html: the page `dvc plots show/diff` writes, with vega, vega-lite and
# vega-embed inlined, so the plots draw offline. DVC's own page loads them from a CDN, and without
# network every chart is blank, with no message. .dvc/config names this template
# (`plots.html_template`), so plain `dvc plots diff ...` uses it; the output (dvc_plots/index.html)
# is one self-contained file.
#
#   bash scripts/dvc_plots_template.sh     # needs npm once (the npm registry); not at run time
#
# The versions are those DVC's page asks the CDN for (dvc_render/vega.py). All three are BSD-3-Clause
# (University of Washington Interactive Data Lab); their licence texts go into the page, as the
# licence asks of a redistribution, beside a note of what their builds bundle (d3 modules: ISC;
# small MIT / ISC / 0BSD helpers).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSIONS=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${VERSIONS[@]}" >/dev/null)
for v in "${VERSIONS[@]}"; do
  name=${v%@*}
  mkdir -p "$work/$name"
  tar -xzf "$work/$name"-[0-9]*.tgz -C "$work/$name"
done
python3 - "$work" "${VERSIONS[@]}" <<'PY'
import json, sys
from pathlib import Path

work, versions = Path(sys.argv[1]), sys.argv[2:]
notices, scripts = [], []
for v in versions:
    name = v.rsplit("@", 1)[0]
    pkg = work / name / "package"
    meta = json.loads((pkg / "package.json").read_text())
    assert meta["license"] == "BSD-3-Clause", (name, meta["license"])
    js = (pkg / "build" / f"{name}.min.js").read_text(encoding="utf-8")
    for bad in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
        assert bad not in js, (name, bad)  # would end the script early, or be filled in by DVC
    notices.append(f"{name} {meta['version']} ({meta['license']}; bundled dependencies: "
                   f"{', '.join(sorted(meta.get('dependencies', {}))) or 'none'})\n\n"
                   + (pkg / "LICENSE").read_text(encoding="utf-8").strip())
    scripts.append(f"<script>/* {name} {meta['version']} */\n{js}\n</script>")
page = ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n{refresh_tag}\n<title>DVC Plot</title>\n"
        "<!--\nThis page inlines the following libraries, unmodified minified builds from npm "
        "(scripts/dvc_plots_template.sh). Their builds also bundle d3 modules (ISC licence, Mike Bostock) and small "
        "helpers under the MIT, ISC and 0BSD licences named in each package's dependencies.\n\n"
        + "\n\n====\n\n".join(notices) + "\n-->\n"
        + "\n".join(scripts)
        + "\n<style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>\n</head>\n<body>\n"
        "{plot_divs}\n</body>\n</html>\n")
out = Path("configs/dvc-plots.html")
out.write_text(page, encoding="utf-8")
print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
PY
