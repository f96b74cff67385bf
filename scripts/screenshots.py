"""Take the screenshots in docs/ with Playwright driving a local Chromium (no browser download).

    python scripts/screenshots.py --prefect http://127.0.0.1:4200 --mlflow http://127.0.0.1:5000 \
        --dvc-page .cache/dvc_plots/index.html --report reports/evaluate.html --out docs

`scripts/screenshots.sh` installs Playwright in its own venv, finds the running `act ui` (or starts
an MLflow server) and renders the DVC page, then runs this. It talks to Prefect and MLflow over
their REST APIs only, so it needs nothing of the project's own environment. Not a test dependency.

Prefect (`--prefect`): `prefect-sweep.png`, the newest `act-ablations` flow run (one task run per
experiment) and `prefect-flow-run.png`, the newest `act-pipeline` run (one task run per stage).
MLflow: `mlflow-runs.png` (the runs table, at the address `act ui` prints), `mlflow-charts.png`
(the chart view of the `pipeline` parent runs: the headline metrics per policy) and
`mlflow-compare.png` (two runs of one stage compared).
"""

from __future__ import annotations

import argparse
import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

WIDTH = 1400


def mlflow_api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                 headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def close_side_panel(page) -> None:
    """MLflow 3 opens a chat side panel on a fresh browser profile: close it if it is there."""
    button = page.locator("[aria-label*='Close' i]:visible").first  # not the search box's hidden clear icon
    if button.count():
        button.click(timeout=3000)
        page.wait_for_timeout(500)


def prefect_api(base: str, path: str, body: dict) -> list | dict:
    req = urllib.request.Request(f"{base}/api/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def prefect_shots(page, base: str, out: Path) -> None:
    """The newest run of each flow, on its flow run page (task runs and logs)."""
    for flow, name in (("act-ablations", "prefect-sweep.png"), ("act-pipeline", "prefect-flow-run.png")):
        runs = prefect_api(base, "flow_runs/filter", {"flows": {"name": {"any_": [flow]}},
                                                     "sort": "START_TIME_DESC", "limit": 1})
        if not runs:
            print(f"skipped {name}: no {flow} flow run on {base}")
            continue
        page.goto(f"{base}/runs/flow-run/{runs[0]['id']}")
        page.wait_for_selector(f"text={runs[0]['name']}", timeout=60000)
        page.wait_for_timeout(4000)  # the timeline and task runs load after the header
        page.screenshot(path=str(out / name))
        print(f"wrote {out / name} ({flow} run {runs[0]['name']!r})")


def mlflow_shots(page, base: str, experiment: str, stage: str, out: Path) -> None:
    exp_id = mlflow_api(base, f"experiments/get-by-name?experiment_name={urllib.parse.quote(experiment)}")["experiment"]["experiment_id"]
    runs_table = f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning"  # what `act ui` prints
    page.goto(runs_table)
    page.wait_for_selector("text=matching runs", timeout=60000)
    close_side_panel(page)
    page.screenshot(path=str(out / "mlflow-runs.png"))
    print(f"wrote {out / 'mlflow-runs.png'}")

    # the chart view over the parent runs only: their headline metrics, grouped by policy
    query = urllib.parse.urlencode({"compareRunsMode": "CHART", "searchFilter": "tags.`act.stage` = 'pipeline'"})
    page.goto(f"{runs_table}&{query}")
    page.wait_for_selector("text=matching runs", timeout=60000)
    close_side_panel(page)
    page.wait_for_timeout(4000)  # charts draw after the table
    page.screenshot(path=str(out / "mlflow-charts.png"))
    print(f"wrote {out / 'mlflow-charts.png'}")

    runs = mlflow_api(base, "runs/search", {
        "experiment_ids": [exp_id], "max_results": 2, "order_by": ["attributes.start_time DESC"],
        "filter": f"tags.`act.stage` = '{stage}' and attributes.status = 'FINISHED'"}).get("runs", [])
    if len(runs) < 2:
        print(f"skipped mlflow-compare.png: fewer than 2 finished {stage!r} runs in experiment {experiment!r}")
        return
    ids = [r["info"]["run_id"] for r in runs]
    query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([exp_id])})
    page.goto(f"{base}/#/compare-runs?{query}")
    page.wait_for_selector("text=Comparing 2 Runs", timeout=60000)
    close_side_panel(page)
    diff_only = page.get_by_text("Show diff only").first
    if diff_only.count():
        diff_only.click()  # only the params and metrics that differ between the two runs
        page.wait_for_timeout(500)
    page.screenshot(path=str(out / "mlflow-compare.png"), full_page=True)
    print(f"wrote {out / 'mlflow-compare.png'}")


def file_shot(page, path: Path, dest: Path, wait_for: str | None = None, height: int | None = None) -> None:
    page.goto(path.resolve().as_uri())
    if wait_for:
        page.wait_for_selector(wait_for, timeout=60000)
    page.wait_for_timeout(1000)
    if height:
        page.screenshot(path=str(dest), clip={"x": 0, "y": 0, "width": WIDTH, "height": height}, full_page=True)
    else:
        page.screenshot(path=str(dest), full_page=True)
    print(f"wrote {dest}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                   help="Chromium executable (default: chromium on PATH)")
    p.add_argument("--mlflow", help="MLflow server URL (skip the MLflow shots when absent)")
    p.add_argument("--prefect", help="Prefect server URL, e.g. `act ui`'s (skip the Prefect shots when absent)")
    p.add_argument("--experiment", default="act")
    p.add_argument("--compare-stage", default="train", help="compare the two newest finished runs of this stage")
    p.add_argument("--dvc-page", type=Path, help="index.html of `dvc plots diff`")
    p.add_argument("--report", type=Path, help="the HTML report")
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args()
    from playwright.sync_api import sync_playwright  # a docs tool, not a project dependency

    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        if args.prefect:
            prefect_shots(page, args.prefect, args.out)
        if args.mlflow:
            mlflow_shots(page, args.mlflow, args.experiment, args.compare_stage, args.out)
        if args.dvc_page:
            file_shot(page, args.dvc_page, args.out / "dvc-plots-diff.png", wait_for=".vega-embed")
        if args.report:
            file_shot(page, args.report, args.out / "report.png", height=1600)
        browser.close()


if __name__ == "__main__":
    main()
