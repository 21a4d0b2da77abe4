"""A small KD training job used by tests/test_train.py: a teacher on modality a, then a KD student on modality b,
each with its own checkpoint folder. Prints one line per finished epoch; rank 0 writes the results as JSON.

    python tests/train_job.py --out r.json [--ckpt DIR] [--batch-size 32] [--epochs 6] [--pause-at ROLE:EPOCH:POINT]
    torchrun --standalone --nproc_per_node 2 tests/train_job.py --out r.json --batch-size 256

`--pause-at teacher:2:17` stops the job after batch 17 of the teacher's epoch 2; `student:0:save-written` inside the
checkpoint write of that epoch, after the temporary file is complete and before it replaces the checkpoint;
`...:save-partial` with the temporary file half written. There the job prints "PAUSED" and sleeps, so a test can
SIGKILL it at exactly that point, whatever the speed of the machine.
"""
import argparse
import json
import os
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from mfh_nb import mvd
from mfh_nb.train import Callback, DictDataset, Distill, Supervised, fit


class EpochPrinter(Callback):
    def __init__(self, name): self.name = name
    def on_epoch_end(self, state):
        if state.rank == 0: print(f"{self.name} epoch {state.epoch} done", flush=True)


def pause() -> None:
    print("PAUSED", flush=True)
    time.sleep(3600)
    sys.exit("nobody killed the paused job")


class PauseAt(Callback):
    "Pause after batch `point` of `epoch`, or arm the checkpoint write of that epoch to pause (see `pause_in_writes`)."
    def __init__(self, epoch: int, point: str): self.epoch, self.point, self.armed = epoch, point, False
    def on_batch_end(self, state):
        if state.epoch == self.epoch and self.point == str(state.batch): pause()
    def on_epoch_end(self, state): self.armed = state.epoch == self.epoch and self.point.startswith("save")


def pause_in_writes(role: str, pauser: PauseAt) -> None:
    "Make the checkpoint write of `role` pause once `pauser` is armed: after the temporary file is written (or half of it)."
    replace = os.replace
    def patched(src, dst):
        if pauser.armed and str(dst).endswith(os.path.join(role, "checkpoint.pt")):
            if pauser.point == "save-partial":
                with open(src, "r+b") as f: f.truncate(os.path.getsize(src) // 2)
            pause()
        return replace(src, dst)
    os.replace = patched


def mlp(d_in: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n-train", type=int, default=2048)
    ap.add_argument("--pause-at", default=None, help="ROLE:EPOCH:POINT, POINT a batch index, save-written or save-partial")
    args = ap.parse_args()
    callbacks = {"teacher": [EpochPrinter("teacher")], "student": [EpochPrinter("student")]}
    if args.pause_at:
        role, epoch, point = args.pause_at.split(":")
        pauser = PauseAt(int(epoch), point)
        callbacks[role].append(pauser)
        pause_in_writes(role, pauser)
    torch.set_num_threads(1)
    spec = mvd.with_random_columns(mvd.venn_spec(8, 4, 0, d_a=30, d_b=30), seed=0)
    gen = torch.Generator().manual_seed(1)
    task = mvd.make_task(spec, seed=2)
    data = {name: mvd.sample(task, n, gen) for name, n in (("train", args.n_train), ("val", 256), ("test", 512))}
    dl = lambda name, shuffle: DataLoader(DictDataset(**{k: data[name][k] for k in "aby"}),
                                          batch_size=args.batch_size, shuffle=shuffle)
    common = dict(epochs=args.epochs, val_loader=dl("val", False), test_loader=dl("test", False), num_classes=2,
                  lr=0.05, device="cpu", progress=False)
    ckpt = lambda name: f"{args.ckpt}/{name}" if args.ckpt else None
    teacher = fit(Supervised(mlp(30, 0), key="a"), dl("train", True), checkpoint_dir=ckpt("teacher"),
                  callbacks=callbacks["teacher"], **common)
    student = fit(Distill(mlp(30, 1), teacher.model, rho=0.5), dl("train", True), checkpoint_dir=ckpt("student"),
                  callbacks=callbacks["student"], **common)
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        result = {name: dict(history=r.history.drop(columns="seconds").to_dict("records"), best_epoch=r.best_epoch,
                             best_val=r.best_val, test=r.test, resumed_from=r.resumed_from,
                             weights=[p.detach().double().sum().item() for p in r.model.parameters()])
                  for name, r in (("teacher", teacher), ("student", student))}
        with open(args.out, "w") as f: json.dump(result, f)


if __name__ == "__main__":
    main()
