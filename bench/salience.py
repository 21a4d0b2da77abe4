"""Time Algorithm 1 (steps 2-9) two ways in one process: the literal loop (one channel, one permutation, one
forward pass) and the fast path of mfh_nb.salience (stacked permuted copies, network cut at the layer).

(a) logistic regression ranked at its input: d=50, M=100, n=200
(b) a CNN the size of the RAVDESS audio teacher (input 1x40x256, 3 conv + 3 fully connected layers), ranked at its
    128-d layer "fc2"; the other network's outputs are computed once. Compared on n=128, M=2; then the fast path
    alone on n=8,000, M=10.

    python bench/salience.py [--device cpu] [--skip-large]
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from mfh_nb.experiment import device_name, resolve_device
from mfh_nb.salience import salience


class AudioNet(nn.Module):
    "The size of the RAVDESS audio teacher: 3 conv + 3 FC layers, a 128-d fc2, 8 classes."
    def __init__(self, n_classes: int = 8):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(1, 32, 7, padding=1), nn.Conv2d(32, 64, 5, padding=1), nn.Conv2d(64, 128, 3)
        self.pool, self.gpool = nn.MaxPool2d(2), nn.AdaptiveMaxPool2d((7, 14))
        self.fc1, self.fc2, self.fc3 = nn.Linear(128 * 7 * 14, 1024), nn.Linear(1024, 128), nn.Linear(128, n_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.gpool(F.relu(self.conv3(x)))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(F.relu(self.fc2(x)))


def timed(fn, dev):
    t0 = time.perf_counter()
    out = fn()
    if dev.type == "cuda": torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def compare(name, f1, f2, xa, xb, dev, **kw):
    salience(f1, f2, xa[:16], xb[:16], device=dev, **dict(kw, M=1))  # warm-up
    lit, t_lit = timed(lambda: salience(f1, f2, xa, xb, device=dev, method="literal", **kw), dev)
    fast, t_fast = timed(lambda: salience(f1, f2, xa, xb, device=dev, **kw), dev)
    print(f"{name}: literal {t_lit:8.3f} s   fast {t_fast:8.3f} s   ratio {t_lit / t_fast:7.1f}x   "
          f"max |difference| {(lit - fast).abs().max():.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-large", action="store_true", help="skip the n=8,000 fast-path run")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(f"on {device_name(dev)}")
    torch.manual_seed(0)
    compare("(a) logistic regression, input, d=50, M=100, n=200", nn.Linear(50, 2), nn.Linear(50, 2),
            torch.randn(200, 50), torch.randn(200, 50), dev, M=100)
    teacher, other = AudioNet(), nn.Linear(16, 8)
    compare("(b) audio CNN, fc2 (128-d), M=2, n=128", teacher, other, torch.randn(128, 1, 40, 256), torch.randn(128, 16), dev,
            layer="fc2", M=2, batch_size=64)
    if not args.skip_large:
        xa, xb = torch.randn(8000, 1, 40, 256), torch.randn(8000, 16)
        _, t = timed(lambda: salience(teacher, other, xa, xb, layer="fc2", M=10, batch_size=64, device=dev), dev)
        print(f"(b) audio CNN, fc2, M=10, n=8000: fast {t:.2f} s")


if __name__ == "__main__":
    main()
