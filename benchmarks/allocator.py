"""Training steps with glibc's default malloc against medsight's setting (freed blocks kept for reuse).

    python benchmarks/allocator.py                 # one thread, 3 rounds, about 4 minutes
    python benchmarks/allocator.py --threads 2 --rounds 2

``medsight`` (the command line) calls :func:`medsight.allocator.keep_freed_memory` at start. This times
the training step of three networks, each in a fresh process, with and without that call, the two modes
interleaved round after round (this VM's speed drifts by up to 2x over minutes, so only paired rounds
compare): medsight's DRIVE U-Net (base 16, 6 stages, 4 x 256^2, bf16 as its CPU plan trains),
EfficientNet-Lite0 as ``compare`` fine-tunes it (32 x 192^2, channels-last), and the peer's network, the
MONAI UNet of the time-to-Dice baseline (16-256, 2 residual units, 16 x 128^2, float32), to show the
setting is not specific to medsight's networks. Reports each process's median step (after 3 warm-up
steps), the kernel (system) CPU seconds, the peak RSS, and the ratio kept / default per network. Writes
benchmarks/results/allocator.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import format_table, write_results

NETWORKS = ("medsight_unet", "efficientnet_lite0", "monai_unet")

CHILD = r"""
import json, resource, sys, time
import torch
mode, network, threads, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
applied = False
if mode == "keep":
    from medsight.allocator import keep_freed_memory
    applied = keep_freed_memory()
torch.set_num_threads(threads)
torch.manual_seed(0)
bf16 = False
if network == "medsight_unet":
    from medsight.nets.unet import UNet
    net = UNet(2, 3, 2, [16, 32, 64, 128, 256, 512], [[1, 1]] + [[2, 2]] * 5, [[3, 3]] * 6)
    x, y, bf16 = torch.randn(4, 3, 256, 256), torch.randint(0, 2, (4, 256, 256)), True
elif network == "efficientnet_lite0":
    from medsight.nets.efficientnet import efficientnet_lite0
    net = efficientnet_lite0(num_classes=2, pretrained=False).to(memory_format=torch.channels_last)
    x, y = torch.randn(32, 3, 192, 192).contiguous(memory_format=torch.channels_last), torch.randint(0, 2, (32,))
else:
    from monai.networks.nets import UNet as MonaiUNet
    net = MonaiUNet(2, 3, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)
    x, y = torch.randn(16, 3, 128, 128), torch.randint(0, 2, (16, 128, 128))
opt = torch.optim.AdamW(net.parameters(), 1e-3)
times = []
for i in range(steps + 3):
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = net(x)
    torch.nn.functional.cross_entropy(out.float(), y).backward()
    opt.step()
    times.append(time.perf_counter() - start)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"applied": applied, "median_step_s": sorted(times[3:])[len(times[3:]) // 2],
                  "system_cpu_s": usage.ru_stime, "user_cpu_s": usage.ru_utime, "peak_rss_mb": usage.ru_maxrss / 1024}))
"""


def measure(mode: str, network: str, threads: int, steps: int) -> dict:
    """One fresh process: the median training step of ``network`` with the allocator ``mode``."""
    done = subprocess.run([sys.executable, "-c", CHILD, mode, network, str(threads), str(steps)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parent)
    if done.returncode:
        sys.exit(f"{network} ({mode}) failed: {done.stderr[-1000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    runs: dict[str, dict[str, list[dict]]] = {n: {"default": [], "keep": []} for n in NETWORKS}
    for r in range(args.rounds):
        for network in NETWORKS:
            for mode in (("default", "keep") if r % 2 == 0 else ("keep", "default")):
                runs[network][mode].append(measure(mode, network, args.threads, args.steps))
                print(f"round {r} {network} {mode}: {runs[network][mode][-1]['median_step_s']:.3f} s a step",
                      flush=True)
    results, rows = {}, []
    for network, modes in runs.items():
        if not all(m["applied"] for m in modes["keep"]):
            sys.exit("keep_freed_memory() did not apply here (not glibc?): nothing to compare")
        paired = [k["median_step_s"] / d["median_step_s"] for d, k in zip(modes["default"], modes["keep"])]
        summary = {mode: {key: round(statistics.median(m[key] for m in ms), 4)
                          for key in ("median_step_s", "system_cpu_s", "user_cpu_s", "peak_rss_mb")}
                   for mode, ms in modes.items()}
        results[network] = {**summary, "step_ratio_keep_over_default_per_round": [round(p, 3) for p in paired],
                            "step_ratio_keep_over_default": round(statistics.median(paired), 3), "rounds": modes}
        rows.append([network, summary["default"]["median_step_s"], summary["keep"]["median_step_s"],
                     round(statistics.median(paired), 3), summary["default"]["system_cpu_s"],
                     summary["keep"]["system_cpu_s"], summary["default"]["peak_rss_mb"], summary["keep"]["peak_rss_mb"]])
    path = write_results("allocator", {"threads": args.threads, "rounds": args.rounds, "steps": args.steps,
                                       "results": results})
    print(format_table(["network", "step s default", "step s kept", "ratio (paired median)", "kernel s default",
                        "kernel s kept", "peak MB default", "peak MB kept"], rows))
    print(f"written {path}")


if __name__ == "__main__":
    main()
