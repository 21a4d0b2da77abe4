"""NYU Depth V2 speed: the loader (images/s, with SA-Gate's augmentation vs without) on a fixture written at the real
size (480x640, SA-Gate layout: JPEG, .npy, PNG), and a DeepLab V3+ training step at 480x640 on random tensors.

CPU: batch 2 (the BatchNorm after ASPP's image pooling needs two samples in training mode), fp32; the baseline is an
inference step in the same process. CUDA: images/s of a training step with AMP (bf16 where supported) and
channels_last; the baseline is the same step in fp32 without channels_last.

    python bench/nyud.py [--device cpu|cuda] [--depth 101] [--batch N] [--steps 3] [--images 8]
"""
import argparse
import resource
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mfh_nb.data.nyud import NYUDepthV2, train_transform, write_fixture
from mfh_nb.experiment import device_name, resolve_device
from mfh_nb.models.nyud import DeepLabV3Plus


def loader_rate(root, transform, workers, passes=2):
    "Images per second through a DataLoader over the fixture's training split."
    dl = DataLoader(NYUDepthV2(root, "train", transform=transform), batch_size=1, num_workers=workers)
    t0, n = time.perf_counter(), 0
    for _ in range(passes):
        for _ in dl: n += 1
    return n / (time.perf_counter() - t0)


def step_time(model, x, y, train, amp, dev, steps):
    "Seconds per step (forward, and backward + SGD update if `train`), after one warm-up step."
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    model.train(train)
    for i in range(steps + 1):
        if i == 1:
            if dev.type == "cuda": torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype, enabled=amp), torch.set_grad_enabled(train):
            loss = F.cross_entropy(model(x), y, ignore_index=255)
        if train: opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    if dev.type == "cuda": torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--depth", type=int, default=101, help="ResNet depth of the encoder (width 64)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: 2 on CPU, 8 on CUDA)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    ap.add_argument("--images", type=int, default=8, help="training images of the loader fixture")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    batch = args.batch or (8 if dev.type == "cuda" else 2)
    print(f"on {device_name(dev)}")

    root = write_fixture(tempfile.mkdtemp(), n_train=args.images, n_test=1, size=(480, 640), layouts=("sagate",))["sagate"]
    plain = loader_rate(root, None, args.workers)
    aug = loader_rate(root, train_transform((480, 480), (0.5, 1.75)), args.workers)
    print(f"loader, SA-Gate layout 480x640, {args.workers} workers: {plain:7.1f} images/s plain, "
          f"{aug:7.1f} images/s with scale/crop/mirror (ratio {aug / plain:.2f})")

    torch.manual_seed(0)
    model = DeepLabV3Plus(40, 3, args.depth, 64).to(dev)
    x, y = torch.randn(batch, 3, 480, 640, device=dev), torch.randint(0, 40, (batch, 480, 640), device=dev)
    summary = f"SUMMARY loader {aug:.1f} images/s augmented (x{aug / plain:.2f} of plain)"
    if dev.type == "cuda":
        base = step_time(model, x, y, True, False, dev, args.steps)
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        fast = step_time(model, x, y, True, True, dev, args.steps)
        print(f"DeepLab V3+ ResNet-{args.depth} train step, batch {batch}, 480x640: fp32 {batch / base:7.1f} images/s, "
              f"AMP + channels_last {batch / fast:7.1f} images/s (ratio {base / fast:.2f}), "
              f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.1f} GiB")
        summary += f"; DeepLab V3+ R{args.depth} train {batch / fast:.1f} images/s AMP+channels_last (x{base / fast:.2f} of fp32)"
    else:
        infer = step_time(model, x, y, False, False, dev, args.steps)
        train = step_time(model, x, y, True, False, dev, args.steps)
        print(f"DeepLab V3+ ResNet-{args.depth}, batch {batch}, 480x640, {torch.get_num_threads()} threads: "
              f"inference {infer:6.2f} s/step, training {train:6.2f} s/step (ratio {train / infer:.2f}), "
              f"{batch / train:.2f} images/s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
        summary += f"; DeepLab V3+ R{args.depth} train {train:.1f} s/step, batch {batch}"
    print(summary)


if __name__ == "__main__":
    main()
