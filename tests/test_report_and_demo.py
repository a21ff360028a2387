"""The report (self-contained HTML) and the embedded demo."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from medsight import api
from medsight.demo import demo_data_path


def test_report_is_self_contained_with_curves_and_metrics(tiny_breast, tmp_path):
    run = api.train(tiny_breast, quiet=True)
    pred = api.predict(run, [tiny_breast], run / "validation_predictions", quiet=True)
    api.evaluate(pred, tiny_breast, quiet=True)
    html = api.report(run, quiet=True).read_text()
    assert html.count("data:image/png;base64,") >= 3  # learning curves, ROC, confusion, reliability
    assert "auc" in html and "http://" not in html and "<script src" not in html


def test_demo_data_ships_with_attribution():
    path = demo_data_path()
    assert path.is_file() and "CC BY 4.0" in (path.parent / "ATTRIBUTION.txt").read_text()


def test_demo_runs_whole_flow_from_any_folder(tmp_path):
    t0 = time.time()
    env = {**os.environ, "MEDSIGHT_PROGRESS": "0"}
    r = subprocess.run([sys.executable, "-m", "medsight", "demo", "out"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    assert (out / "run" / "metrics.json").is_file() and (out / "run" / "report.html").is_file()
    assert "report.html" in r.stdout.strip().splitlines()[-1]
    assert time.time() - t0 < 600  # 3 minutes on an idle 2-core machine; looser under a loaded CI
