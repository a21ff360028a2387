"""``medsight demo``: the whole flow on small real data shipped inside the package."""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from medsight import api

DEMO_BUDGET_MINUTES = 1.0


def demo_data_path() -> Path:
    """The shipped BreastMNIST file (CC BY 4.0; see ATTRIBUTION.txt beside it)."""
    return Path(str(resources.files("medsight") / "demo_data" / "breastmnist.npz"))


def run_demo(out_dir: str | Path = "medsight-demo", budget_minutes: float = DEMO_BUDGET_MINUTES) -> dict:
    """Import, plan, train, predict, evaluate and report BreastMNIST into ``out_dir``; print where it all is."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    print(f"medsight demo: BreastMNIST (MedMNIST v2, CC BY 4.0) -> {out_dir}")
    result = api.run(demo_data_path(), out_dir, format="medmnist", budget_minutes=budget_minutes)
    m = result["metrics"].get("summary", {})
    print(f"validation AUC {m.get('auc', float('nan')):.3f}, accuracy {m.get('accuracy', float('nan')):.3f} "
          f"on {result['metrics'].get('num_cases')} cases; {time.perf_counter() - t0:.0f} s in all")
    print(f"metrics: {Path(result['run_dir']) / 'metrics.json'}")
    print(f"report:  {result['report']}")
    return result
