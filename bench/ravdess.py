"""RAVDESS speed, in one process:

(1) the loader on a fixture written at the release's frame size (256 x 512 JPEG frames, 40 x 256 float32 MFCCs):
    samples/s reading MFCCs only, frames only (JPEG decode included) and both; ratio to the MFCC-only loader;
(2) one SGD training step of each network at full size (AudioNet on (B, 1, 40, 256), ImageNet on (B, 3, 256, 512)),
    random tensors; ratio to that network's forward pass alone (CPU: batch 8, fp32; CUDA: batch 64, AMP);
(3) Algorithm 1 on a full-size AudioNet at fc2 with n = 2,000 pairs and M = 10 (the library's fast path), against
    the literal loop (one forward pass of the whole network per channel and permutation), estimated from a few
    channels of that loop (on CPU, on `--literal-n` samples, scaled to n).

    python bench/ravdess.py [--device cpu|cuda] [--n 2000] [--M 10]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mfh_nb.data.ravdess import RavdessDataset, write_fixture
from mfh_nb.experiment import device_name, resolve_device
from mfh_nb.models.ravdess import AudioNet, ImageNet
from mfh_nb.salience import mse_distance, permuted_channel, salience, sample_permutations
from mfh_nb.train import autocast_for


def timed(fn, dev, repeat=1):
    "(result of the last call, seconds per call)."
    if dev.type == "cuda": torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat): out = fn()
    if dev.type == "cuda": torch.cuda.synchronize()
    return out, (time.perf_counter() - t0) / repeat


def loader_rows(root, batch):
    rows = []
    for keys in (("audio",), ("image",), ("audio", "image")):
        ds = RavdessDataset(root, "train", keys=keys)
        _, t = timed(lambda: sum(len(b["label"]) for b in DataLoader(ds, batch_size=batch)), torch.device("cpu"))
        rows.append((f"loader, {' + '.join(keys)} ({len(ds)} pairs, batch {batch})", len(ds) / t, "samples/s"))
    return rows


def step_rows(dev, batch):
    rows = []
    autocast, scaler = autocast_for(dev, amp=True)
    for name, net, shape in (("AudioNet", AudioNet(), (1, 40, 256)), ("ImageNet", ImageNet(), (3, 256, 512))):
        net = net.to(dev)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(batch, *shape, device=dev), torch.randint(0, 8, (batch,), device=dev)
        def step():
            with autocast(): loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        def forward():
            with torch.no_grad(), autocast(): return net(x)
        step(); forward()                                                   # warm-up
        _, t_step = timed(step, dev, repeat=3)
        _, t_fwd = timed(forward, dev, repeat=3)
        rows.append((f"{name} training step, batch {batch}", batch / t_step, "samples/s", t_step / t_fwd, "x its forward"))
    return rows


def salience_rows(dev, n, M, literal_channels, literal_n):
    torch.manual_seed(0)
    f1, f2 = AudioNet().to(dev).eval(), torch.nn.Linear(16, 8).to(dev)
    xa, xb = torch.randn(n, 1, 40, 256), torch.randn(n, 16)
    salience(f1, f2, xa[:32], xb[:32], layer="fc2", M=1, device=dev)     # warm-up
    _, t_fast = timed(lambda: salience(f1, f2, xa, xb, layer="fc2", M=M, dist=mse_distance, batch_size=250, device=dev), dev)
    m = n if dev.type == "cuda" else min(n, literal_n)
    xa_l, target = xa[:m].to(dev), f2(xb[:m].to(dev)).detach()
    perm = sample_permutations(0, 1, m)[0].to(dev)
    def literal_channel(k):
        with torch.no_grad(), permuted_channel(f1, "fc2", k, perm): return mse_distance(f1(xa_l), target)
    literal_channel(0)                                                  # warm-up
    _, t_pass = timed(lambda: [literal_channel(k) for k in range(literal_channels)], dev)
    t_literal = t_pass / literal_channels * 128 * M * n / m
    return [(f"Algorithm 1 at fc2, fast path, n={n}, M={M}", t_fast, "s", 1.0, "x"),
            (f"Algorithm 1 at fc2, literal loop (estimate from {literal_channels} channels on n={m})", t_literal, "s",
             t_literal / t_fast, "x the fast path")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=2000, help="pairs Algorithm 1 ranks on")
    ap.add_argument("--M", type=int, default=10, help="permutations per channel")
    ap.add_argument("--literal-channels", type=int, default=2, help="channels of the literal loop to time")
    ap.add_argument("--literal-n", type=int, default=250, help="samples per literal pass on CPU (scaled to n)")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(f"on {device_name(dev)}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        write_fixture(Path(tmp), n_clips=32, frames_per_clip=4, image_size=(256, 512), split=(0.5, 0.25))
        loads = loader_rows(Path(tmp), batch=64)
    base = loads[0][1]
    table = [(what, v, unit, v / base, "x the MFCC-only loader") for what, v, unit in loads]
    table += step_rows(dev, batch=64 if dev.type == "cuda" else 8)
    table += salience_rows(dev, args.n, args.M, args.literal_channels, args.literal_n)
    width = max(len(r[0]) for r in table)
    for what, v, unit, ratio, rel in table:
        print(f"{what:<{width}}  {v:>12,.2f} {unit:<10} {ratio:>9.2f} {rel}")
    steps = "; ".join(f"{what.split()[0]} step {v:.0f} samples/s" for what, v, *_ in table[3:5])
    print(f"SUMMARY loader {table[2][1]:.0f} pairs/s; {steps}; Algorithm 1 fast {table[5][1]:.1f} s, {table[6][3]:.0f}x the literal loop")


if __name__ == "__main__":
    main()
