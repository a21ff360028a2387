"""Small helpers shared by the benchmarks: the machine, the commit, the results JSON and the final table."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SHARED_DATA = Path(os.environ.get("MEDSIGHT_SHARED_DATA", ROOT.parent / "shared" / "data"))


#: the environment variables that size the thread pools of OpenMP, MKL, OpenBLAS and numexpr
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def pin_threads(n: int = 1) -> None:
    """Limit BLAS/OpenMP pools to ``n`` threads; call before numpy/torch are imported to take full effect."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def git_commit() -> dict[str, Any]:
    """The commit of the working tree ("uncommitted" when there is none) and whether it has local changes."""
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain")
    return {"commit": commit or "uncommitted", "dirty": bool(status) if status is not None else None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def uptime() -> str:
    """The ``uptime`` line (load and users), "" where the command is missing."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, GPU, memory, library versions and torch threads of this machine."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": load_average(),
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info


def library_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of the given distributions (None if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def time_calls(fn: Callable[[], Any], n: int) -> float:
    """Seconds taken by ``n`` calls of ``fn``."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


def write_results(name: str, payload: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``NAME.json`` into ``results_dir`` (default ``benchmarks/results``) with commit, machine and date added."""
    results_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **git_commit(),
              "machine": machine_info(), **payload}
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def earlier_entries(name: str, key: str, running: set[str], results_dir: Path | None = None) -> dict:
    """The entries under ``key`` of the committed ``NAME.json`` that are not being run now, each stamped
    with the date and commit of the run that made it (a benchmark re-running only some of its parts keeps
    the others' figures without passing them off as new)."""
    path = (Path(results_dir) if results_dir is not None else RESULTS_DIR) / f"{name}.json"
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    stamp = {"run_date": earlier.get("date"), "run_commit": earlier.get("commit")}
    return {k: {**stamp, **entry} for k, entry in earlier.get(key, {}).items() if k not in running}


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (floats with 2 decimals)."""
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body])
