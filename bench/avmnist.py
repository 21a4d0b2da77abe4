"""AV-MNIST speed: the memory-mapped loader on a fixture, and one training step of each of the paper's networks at full
size (random tensors at the real shapes: image 1x28x28, audio 1x112x112, 10 classes).

(a) loader: samples/s over one epoch of a fixture written in MultiBench's layout, for several numbers of worker
    processes; ratio against 0 workers.
(b) training steps: forward + backward + SGD step of the audio student, the audio teacher, the late-fusion teacher,
    and a KD step of the student with the late-fusion teacher run live or looked up (CachedTeacher); ms per step,
    samples/s, ratio against the student's supervised step. On CUDA the steps run under autocast (bf16) as fit does.

    python bench/avmnist.py [--device cpu|cuda] [--batch 40] [--fixture 2000] [--workers 0 2]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mfh_nb.data.avmnist import avmnist_loaders, write_fixture
from mfh_nb.experiment import device_name, resolve_device
from mfh_nb.experiments.avmnist import CachedTeacher
from mfh_nb.kd import kd_loss
from mfh_nb.models.avmnist import audio_student, audio_teacher, multimodal_teacher
from mfh_nb.train import autocast_for


def loader_rate(root: Path, workers: int, batch: int) -> float:
    "Samples per second over one epoch of the fixture's training split (first batch excluded: worker start-up)."
    loader = avmnist_loaders(root, val_size=batch, batch_size=batch, num_workers=workers)["train"]
    it = iter(loader)
    next(it)
    t0, n = time.perf_counter(), 0
    for b in it: n += len(b["y"])
    return n / (time.perf_counter() - t0)


def step_time(step, dev: torch.device, repeats: int) -> float:
    "Seconds per call of `step` after two warm-up calls."
    for _ in range(2): step()
    if dev.type == "cuda": torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats): step()
    if dev.type == "cuda": torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def training_steps(dev: torch.device, batch: int, repeats: int) -> dict:
    "Seconds per training step of each network (and of KD with a live or a cached teacher) on random full-size batches."
    autocast, _ = autocast_for(dev, amp=True)
    image, audio = torch.rand(batch, 1, 28, 28, device=dev), torch.rand(batch, 1, 112, 112, device=dev)
    y, idx = torch.randint(0, 10, (batch,), device=dev), torch.arange(batch, device=dev)
    teacher = multimodal_teacher().to(dev).eval()
    cached = CachedTeacher(torch.randn(batch, 10, device=dev))
    def make_step(net, loss_of):
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        def step():
            with autocast(): loss = loss_of(net)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        return step
    def live_kd(net):
        with torch.no_grad(): t = teacher(image, audio)
        return kd_loss(net(audio), t, y, rho=0.5)
    steps = {"audio student (3 conv)": make_step(audio_student().to(dev), lambda n: F.cross_entropy(n(audio), y)),
             "audio teacher (6 conv)": make_step(audio_teacher().to(dev), lambda n: F.cross_entropy(n(audio), y)),
             "late-fusion teacher (4+5 conv)": make_step(multimodal_teacher().to(dev), lambda n: F.cross_entropy(n(image, audio), y)),
             "KD student, live late-fusion teacher": make_step(audio_student().to(dev), live_kd),
             "KD student, CachedTeacher": make_step(audio_student().to(dev), lambda n: kd_loss(n(audio), cached(idx), y, rho=0.5))}
    return {name: step_time(step, dev, repeats) for name, step in steps.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=40, help="batch size (MultiBench's 40)")
    ap.add_argument("--fixture", type=int, default=2000, help="rows of the fixture's train file for the loader")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader worker counts; the first is the baseline")
    ap.add_argument("--repeats", type=int, default=0, help="timed steps per network (default: 5 on CPU, 50 on CUDA)")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(f"on {device_name(dev)}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        root = write_fixture(Path(tmp) / "avmnist", n_train=args.fixture, n_test=args.batch)
        rates = {w: loader_rate(root, w, args.batch) for w in args.workers}
    base = rates[args.workers[0]]
    print(f"\n(a) loader, fixture of {args.fixture} rows, batch {args.batch}, memory-mapped")
    for w, r in rates.items(): print(f"  {w} workers: {r:10,.0f} samples/s   {r / base:5.2f}x")
    steps = training_steps(dev, args.batch, args.repeats or (50 if dev.type == "cuda" else 5))
    base = steps["audio student (3 conv)"]
    amp = " (AMP)" if dev.type == "cuda" else ""
    print(f"\n(b) one training step{amp}, batch {args.batch}, full-size inputs")
    for name, s in steps.items():
        print(f"  {name:38s} {1000 * s:8.1f} ms   {args.batch / s:9,.0f} samples/s   {s / base:5.2f}x the student")
    best = max(rates, key=rates.get)
    print(f"SUMMARY loader {rates[best]:,.0f} samples/s ({best} workers); steps at batch {args.batch}{amp}, samples/s: "
          + ", ".join(f"{name.split(' (')[0].split(',')[0]} {args.batch / s:,.0f}" for name, s in list(steps.items())[:3])
          + f"; KD step cached/live teacher {steps['KD student, CachedTeacher'] / steps['KD student, live late-fusion teacher']:.2f}x")


if __name__ == "__main__":
    main()
