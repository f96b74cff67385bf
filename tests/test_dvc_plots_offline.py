"""`dvc plots show/diff` draw offline: .dvc/config names configs/dvc-plots.html, a page with vega,
vega-lite and vega-embed inlined (scripts/dvc_plots_template.sh), so the page DVC writes loads
nothing from a CDN. DVC's own page fetches them from cdn.jsdelivr.net and, without network, every
chart is blank."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "configs" / "dvc-plots.html"


def test_the_configured_template_inlines_the_chart_library():
    config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"html_template\s*=\s*\.\./configs/dvc-plots\.html", config)
    page = TEMPLATE.read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # {scripts} would bring the CDN tags back
    assert not re.search(r"<script[^>]+src=", page)
    for lib in ("vega 5.20.2", "vega-lite 5.2.0", "vega-embed 6.18.2"):
        assert f"/* {lib} */" in page
    assert page.count("Redistribution and use in source and binary forms") == 3  # each BSD-3 licence text


@pytest.mark.slow
def test_dvc_plots_show_writes_a_page_with_no_network_reference(tmp_path):
    out = tmp_path / "dvc_plots"
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=600)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "vegaEmbed(" in page and "/* vega-embed 6.18.2 */" in page
    assert "cdn.jsdelivr" not in page and not re.search(r"<script[^>]+src=\"?https?:", page)
