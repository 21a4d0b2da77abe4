"""The trainer on a GPU: the same KD job (teacher, then student) with and without mixed precision, and under torchrun
with NCCL. Prints samples/s and test accuracy for each, and the largest accuracy difference AMP makes.

    python bench/train_gpu.py --device cuda            # fp32 vs AMP (bf16 where supported)
    torchrun --standalone --nproc_per_node 1 bench/train_gpu.py --device cuda --ddp-only   # NCCL process group
"""
import argparse
import os
import time

import torch
from torch.utils.data import DataLoader
from torchvision.ops import MLP

from mfh_nb import mvd
from mfh_nb.experiment import device_name, resolve_device, seeded_module
from mfh_nb.train import DictDataset, Distill, Supervised, fit


def data(n_train: int):
    "A Gaussian MVD (8 shared, 4 teacher-only decisive features) with train/val/test loaders of width-256 inputs."
    spec = mvd.with_random_columns(mvd.venn_spec(8, 4, 0, d_a=256, d_b=256), seed=0)
    task, gen = mvd.make_task(spec, seed=1), torch.Generator().manual_seed(2)
    sets = {k: mvd.sample(task, n, gen) for k, n in (("train", n_train), ("val", 2048), ("test", 8192))}
    return {k: DataLoader(DictDataset(**{m: v[m] for m in "aby"}), batch_size=512, shuffle=k == "train") for k, v in sets.items()}


def job(loaders: dict, amp: bool, device: str, epochs: int) -> dict:
    "Teacher on a, KD student on b; wall time, samples/s and test accuracy of each."
    common = dict(epochs=epochs, val_loader=loaders["val"], test_loader=loaders["test"], num_classes=2, lr=0.05,
                  device=device, amp=amp, progress=False)
    out, n = {}, len(loaders["train"].dataset) * epochs
    for name, objective in (("teacher", lambda: Supervised(seeded_module(0, lambda: MLP(256, [1024, 1024, 2])), key="a")),
                            ("student", lambda: Distill(seeded_module(1, lambda: MLP(256, [1024, 1024, 2])), out["teacher_model"]))):
        torch.cuda.synchronize() if device.startswith("cuda") else None
        t0 = time.perf_counter()
        r = fit(objective(), loaders["train"], **common)
        torch.cuda.synchronize() if device.startswith("cuda") else None
        dt = time.perf_counter() - t0
        out[f"{name}_model"], out[name] = r.model, dict(seconds=dt, samples_per_s=n / dt, test=r.test)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n-train", type=int, default=65536)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--ddp-only", action="store_true")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    loaders = data(args.n_train)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    print(f"trainer on {device_name(dev)}, world size {world}")
    runs = {"ddp": job(loaders, True, args.device, args.epochs)} if args.ddp_only else {
        "fp32": job(loaders, False, args.device, args.epochs), "amp": job(loaders, True, args.device, args.epochs)}
    for name, r in runs.items():
        for role in ("teacher", "student"):
            print(f"{name:5s} {role:8s} {r[role]['samples_per_s']:12.0f} samples/s  test {r[role]['test']:.4f}  ({r[role]['seconds']:.1f} s)")
    if not args.ddp_only:
        gap = max(abs(runs["fp32"][k]["test"] - runs["amp"][k]["test"]) for k in ("teacher", "student"))
        speed = runs["amp"]["student"]["samples_per_s"] / runs["fp32"]["student"]["samples_per_s"]
        print(f"SUMMARY amp/fp32 speed {speed:.2f}x, largest test-accuracy gap {gap:.4f}")
        if gap > 0.02: raise SystemExit(f"AMP changes test accuracy by {gap:.4f} > 0.02")
    else:
        print(f"SUMMARY ddp world {world} student test {runs['ddp']['student']['test']:.4f}")


if __name__ == "__main__":
    main()
