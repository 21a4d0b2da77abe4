"""Time the Fig. 2 + Fig. 3 sweep (11 settings x 10 runs x 3 models x 1,000 epochs) two ways, in one process:
the batched trainer (every run at once) and the naive reference (one nn.Linear at a time). Prints both wall
times, their ratio, and the largest accuracy difference between them.

    python bench/synthetic.py [--n-runs 10] [--epochs 1000] [--device cpu]
"""
import argparse
import time

import torch

from mfh_nb.experiment import device_name, resolve_device
from mfh_nb.mvd import fig2_specs, fig3_specs
from mfh_nb.data.gauss import draw_sweep
from mfh_nb.experiments.synthetic import train_sweep_batched, train_sweep_naive


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-runs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    data = draw_sweep({"fig2": fig2_specs(), "fig3": fig3_specs()}, args.n_runs, 200, 1000, seed=0)
    n_models = 3 * len(data.meta)
    print(f"{len(data.meta)} runs, {n_models} models, {args.epochs} epochs, on {device_name(dev)}")
    train_sweep_batched(data, 5, 0.1, 0.5, 1.0, dev)  # warm-up
    timings, results = {}, {}
    for name, train in (("batched", train_sweep_batched), ("naive", train_sweep_naive)):
        t0 = time.perf_counter()
        results[name] = train(data, args.epochs, 0.1, 0.5, 1.0, dev)
        if dev.type == "cuda": torch.cuda.synchronize()
        timings[name] = time.perf_counter() - t0
        print(f"{name:8s} {timings[name]:8.2f} s")
    cols = ["teacher_acc", "nokd_acc", "kd_acc"]
    diff = (results["batched"][cols] - results["naive"][cols]).abs().to_numpy().max()
    print(f"ratio naive / batched: {timings['naive'] / timings['batched']:.1f}x")
    print(f"largest accuracy difference between the two: {diff:.4f} (1 test sample = {1 / 1000:.4f})")


if __name__ == "__main__":
    main()
