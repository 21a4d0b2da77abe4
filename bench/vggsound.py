"""VGGSound at the paper's sizes, three measurements in one process (ratios against a baseline measured alongside):

(1) loader: clips/s of VGGSound (JPEG decode of 32 frames of 256x256 + waveform -> STFT (1, 513, 313)) on a fixture
    written at the real size, with 0 DataLoader workers (the baseline) and more; on CUDA also nvJPEG decoding.
(2) one training step of the full-size video student (3D ResNet-18, 3 blocks/stage, width 64, 100 classes) on
    (B, 3, 32, 256, 256), KD loss against random teacher logits. CPU: each batch size in a fresh child process, time and
    peak resident memory; batch 8 only if the smaller ones extrapolate to < --max-gb. CUDA: clips/s and peak GPU
    memory, fp32 (baseline) vs AMP + channels_last_3d.
(3) Algorithm 1 on the full audio teacher (ResNet-18, 512 pooled channels, 100 classes), n = 1,000 spectrograms, M = 10:
    the fast path (trunk once, then only the last linear layer per permutation, rank-one updates) vs the literal loop
    (512 x 10 full forward passes over the n samples), estimated from one timed full pass. On CPU the trunk time is
    measured on --trunk-batch samples and scaled to n.

    python bench/vggsound.py [--device cpu|cuda] [--clips 16] [--workers 0 2] [--batches 1 2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from mfh_nb.data.vggsound import VGGSound, write_fixture
from mfh_nb.experiment import device_name, resolve_device
from mfh_nb.kd import kd_loss
from mfh_nb.models.vggsound import audio_resnet, video_resnet
from mfh_nb.salience import l1_distance, salience


def sync(dev):
    if dev.type == "cuda": torch.cuda.synchronize()


def loader_rate(root, workers, dev, decode_device="cpu"):
    ds = VGGSound(root / "Train", root / "label.json", decode_device=decode_device)
    dl = DataLoader(ds, batch_size=8, num_workers=workers)
    t0 = time.perf_counter()
    n = sum(len(b["y"]) for b in dl)
    sync(dev)
    return n / (time.perf_counter() - t0)


def bench_loader(args, dev):
    root = Path(tempfile.mkdtemp())
    write_fixture(root, n_train=args.clips, n_test=1)
    base = None
    for w in args.workers:
        rate = loader_rate(root, w, dev)
        base = base or rate
        print(f"(1) loader, {w} workers: {rate:6.1f} clips/s  ({rate / base:.2f}x)")
    if dev.type == "cuda":
        rate = loader_rate(root, 0, dev, "cuda")
        print(f"(1) loader, 0 workers, nvJPEG on the GPU: {rate:6.1f} clips/s  ({rate / base:.2f}x)")
    return max(rate, base)


def video_step(batch, dev, amp=False):
    "Seconds of one AdamW step of the full-size video student (CUDA: best of 5 after a warm-up; CPU: one step)."
    net = video_resnet(18, 100).to(dev)
    if amp: net = net.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
    x, t, y = torch.randn(batch, 3, 32, 256, 256, device=dev), torch.randn(batch, 100, device=dev), torch.zeros(batch, dtype=torch.long, device=dev)
    times = []
    for _ in range(1 if dev.type == "cpu" else 6):
        sync(dev); t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = kd_loss(net(x).float(), t, y, rho=0.0)
        opt.zero_grad(); loss.backward(); opt.step()
        sync(dev); times.append(time.perf_counter() - t0)
    return min(times[1:] or times)                                      # CPU: the one step


def peak_rss_gb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"): return int(line.split()[1]) / 2**20
    return float("nan")


def bench_step_cpu(args):
    rows = []
    for b in args.batches:
        out = subprocess.run([sys.executable, __file__, "--child-step", str(b)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"(2) video student step, batch {b}: {rows[-1]['s']:.1f} s, peak resident memory {rows[-1]['gb']:.2f} GB")
    per_clip = (rows[-1]["gb"] - rows[0]["gb"]) / max(1, rows[-1]["b"] - rows[0]["b"]) if len(rows) > 1 else rows[0]["gb"]
    est8 = rows[-1]["gb"] + per_clip * (8 - rows[-1]["b"])
    print(f"(2) batch 8 extrapolated: {est8:.1f} GB, {rows[-1]['s'] / rows[-1]['b'] * 8:.0f} s")
    if est8 < args.max_gb and 8 not in args.batches:
        out = subprocess.run([sys.executable, __file__, "--child-step", "8"], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"(2) video student step, batch 8: {r['s']:.1f} s, peak resident memory {r['gb']:.2f} GB")
        return f"{r['s']:.0f} s, {r['gb']:.1f} GB"
    return f"about {est8:.1f} GB (extrapolated)"


def bench_step_cuda(dev):
    res = {}
    for amp in (False, True):
        torch.cuda.reset_peak_memory_stats()
        s = video_step(8, dev, amp)
        res[amp] = (8 / s, torch.cuda.max_memory_allocated() / 2**30)
        print(f"(2) video student, batch 8, {'AMP bf16 + channels_last_3d' if amp else 'fp32'}: {res[amp][0]:.1f} clips/s "
              f"({res[amp][0] / res[False][0]:.2f}x), peak GPU memory {res[amp][1]:.1f} GB")
    return f"AMP {res[True][0]:.1f} clips/s, {res[True][1]:.1f} GB"


def bench_alg1(args, dev):
    torch.manual_seed(0)
    teacher = audio_resnet(18, 100).to(dev).eval()
    k = args.n if dev.type == "cuda" else args.trunk_batch
    x = torch.randn(min(k, 100), 1, 513, 313, device=dev)               # GPU: n samples in batches of 100
    with torch.no_grad():
        teacher(x[:2]); sync(dev); t0 = time.perf_counter()
        for _ in range(max(1, k // len(x))): teacher(x)
        sync(dev)
    full_pass = (time.perf_counter() - t0) * args.n / (len(x) * max(1, k // len(x)))  # one forward pass over n samples
    h, target = torch.randn(args.n, 512), torch.randn(args.n, 100)       # pooled features, the partner's outputs
    t0 = time.perf_counter()
    p = salience(teacher.fc, nn.Identity(), h, target, M=args.M, dist=l1_distance, device=str(dev), chunk_size=512)
    sync(dev)
    fast = full_pass + time.perf_counter() - t0
    literal = 512 * args.M * full_pass
    print(f"(3) Algorithm 1, audio ResNet-18, n={args.n}, M={args.M}: fast path {fast:.1f} s (trunk {full_pass:.1f} s), "
          f"literal loop about {literal / 3600:.1f} h, ratio {literal / fast:.0f}x; {len(p)} channels ranked")
    return literal / fast


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clips", type=int, default=16, help="clips of the loader fixture")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2], help="CPU step batch sizes (one child process each)")
    ap.add_argument("--max-gb", type=float, default=8.0, help="run batch 8 on the CPU only below this extrapolated peak")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--M", type=int, default=10)
    ap.add_argument("--trunk-batch", type=int, default=4)
    ap.add_argument("--child-step", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_step:
        s = video_step(args.child_step, torch.device("cpu"))
        print(json.dumps(dict(b=args.child_step, s=s, gb=peak_rss_gb())))
        return
    dev = resolve_device(args.device)
    print(f"on {device_name(dev)}, OMP threads {os.environ.get('OMP_NUM_THREADS', 'unset')}")
    rate = bench_loader(args, dev)
    step = bench_step_cuda(dev) if dev.type == "cuda" else bench_step_cpu(args)
    ratio = bench_alg1(args, dev)
    print(f"SUMMARY loader {rate:.1f} clips/s; video student batch 8 {step}; Algorithm 1 fast vs literal {ratio:.0f}x")


if __name__ == "__main__":
    main()
