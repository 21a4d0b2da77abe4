"""Speed of the MM-IMDB pieces, measured in one process:

(a) the HDF5 loader on a fixture file: samples/s of shuffled training batches, read row by row (MultiBench's way: one
    h5py read per row and dataset, the baseline) and batch by batch (`MMIMDB.__getitems__`: one read per dataset),
    with 0 and more DataLoader workers. The file was just written, so it sits in the page cache: this is the
    loader's own cost, not the disk's.
(b) one training step (forward, backward, AdamW) at the real input widths (300 / 4096) on random tensors: the text
    student, the image network, the late-fusion teacher, and a text student distilled from a late-fusion teacher
    (Eq. 1, multi-label); ratios against the text network. Mixed precision on CUDA, as `fit` trains.

    python bench/mmimdb.py [--device cpu|cuda] [--rows 4096] [--batch-size 128] [--workers 0 2] [--steps 10]
"""
import argparse
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mfh_nb.data.mmimdb import MMIMDB, LazyHDF5, write_fixture
from mfh_nb.experiment import device_name, resolve_device
from mfh_nb.kd import multilabel_kd_loss
from mfh_nb.models.mmimdb import LateFusion, image_net, text_net
from mfh_nb.train import Distill, Supervised, autocast_for


class PerRow(LazyHDF5, Dataset):
    "MultiBench's reading of the same split: one h5py read per row and dataset."
    def __init__(self, ds: MMIMDB): self.path, self.ds = ds.path, ds
    def __len__(self): return len(self.ds)
    def __getitem__(self, i):
        f, r = self.h5(), self.ds.start + i
        return {"text": torch.from_numpy(f["features"][r]), "image": torch.from_numpy(f["vgg_features"][r]),
                "y": torch.from_numpy(f["genres"][r][self.ds.columns]).float()}


def loader_rate(ds: Dataset, batch_size: int, workers: int, max_batches: int) -> float:
    "Samples/s of a shuffled DataLoader over `ds` (the first batch, which starts the workers, not counted)."
    it = iter(DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(0)))
    next(it)
    t0, n = time.perf_counter(), 0
    for _, batch in zip(range(max_batches), it): n += len(batch["y"])
    return n / (time.perf_counter() - t0)


def step_time(objective, batch: dict, dev: torch.device, steps: int) -> float:
    "Seconds per training step of `objective.model` on one batch (after two warm-up steps)."
    objective.prepare(dev)
    model = objective.model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    autocast, scaler = autocast_for(dev, amp=True)
    for i in range(steps + 2):
        if i == 2:
            if dev.type == "cuda": torch.cuda.synchronize()
            t0 = time.perf_counter()
        with autocast(): loss, _ = objective.loss(model, batch)
        opt.zero_grad(set_to_none=True); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
    if dev.type == "cuda": torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int, default=4096, help="training rows of the fixture file the loader reads")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=20, help="batches timed per loader setting")
    ap.add_argument("--steps", type=int, default=10, help="training steps timed per network")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(f"on {device_name(dev)}; batch size {args.batch_size}\n\n(a) HDF5 loader, {args.rows} training rows")
    ds = MMIMDB(write_fixture(tempfile.mkdtemp(), n_train=args.rows, n_val=8, n_test=8), "train")
    base = loader_rate(PerRow(ds), args.batch_size, 0, args.batches)
    print(f"{'reading':<28}{'workers':>8}{'samples/s':>12}{'ratio':>8}")
    print(f"{'row by row (MultiBench)':<28}{0:>8}{base:>12.0f}{1:>8.2f}")
    ours = {}
    for w in args.workers:
        for name, data in (("row by row (MultiBench)", PerRow(ds)), ("batch by batch (ours)", ds)):
            if w == 0 and data is not ds: continue
            rate = loader_rate(data, args.batch_size, w, args.batches)
            if data is ds: ours[w] = rate
            print(f"{name:<28}{w:>8}{rate:>12.0f}{rate / base:>8.2f}")
    B, bce = args.batch_size, F.binary_cross_entropy_with_logits
    batch = {"text": 0.1 * torch.randn(B, 300), "image": torch.relu(torch.randn(B, 4096)), "y": torch.randint(0, 2, (B, 2)).float()}
    batch = {k: v.to(dev) for k, v in batch.items()}
    nets = {"text student": Supervised(text_net(), "text", loss=bce), "image network": Supervised(image_net(), "image", loss=bce),
            "late fusion": Supervised(LateFusion(), ("text", "image"), loss=bce),
            "text student + KD": Distill(text_net(), LateFusion(), "text", ("text", "image"), rho=0.0, loss=multilabel_kd_loss)}
    print(f"\n(b) one training step\n{'network':<20}{'params':>12}{'ms/step':>10}{'samples/s':>12}{'ratio':>8}")
    times = {name: step_time(obj, batch, dev, args.steps) for name, obj in nets.items()}
    for name, t in times.items():
        params = sum(p.numel() for p in nets[name].model.parameters())
        print(f"{name:<20}{params:>12,}{1000 * t:>10.1f}{B / t:>12.0f}{t / times['text student']:>8.2f}")
    w = max(ours, key=ours.get)
    print(f"SUMMARY loader {ours[w]:.0f} samples/s ({w} workers, {ours[w] / base:.1f}x row by row); steps (ms): "
          + ", ".join(f"{k} {1000 * t:.1f}" for k, t in times.items()))


if __name__ == "__main__":
    main()
