"""A results writer used by tests/test_experiment.py: writes two figures and results.json with
mfh_nb.experiment.write_results into --out, tagged with --tag so a test can tell runs apart.

`--pause-at K` pauses inside the K-th atomic replace (0, 1: the two figures, 2: results.json), after the temporary
file is written and before it replaces the target; `--partial` truncates that temporary file to half first. The job
then prints PAUSED and sleeps, so a test can SIGKILL it at exactly that point.
"""
import argparse
import os
import sys
import time

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mfh_nb.experiment import write_results  # noqa: E402


def pause_at(k: int, partial: bool) -> None:
    "Make the k-th os.replace of this process pause (after truncating its source to half if `partial`)."
    replace, calls = os.replace, []
    def patched(src, dst):
        calls.append(dst)
        if len(calls) - 1 == k:
            if partial:
                with open(src, "r+b") as f: f.truncate(os.path.getsize(src) // 2)
            print("PAUSED", flush=True)
            time.sleep(3600)
            sys.exit("nobody killed the paused job")
        return replace(src, dst)
    os.replace = patched


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--pause-at", type=int, default=None)
    ap.add_argument("--partial", action="store_true")
    args = ap.parse_args()
    if args.pause_at is not None: pause_at(args.pause_at, args.partial)
    figs = {}
    for name, slope in (("first", 1), ("second", -1)):
        fig, ax = plt.subplots(figsize=(2, 2)); ax.plot([0, 1], [0, slope]); ax.set_title(args.tag)
        figs[name] = fig
    write_results(args.out, "kill test", dict(tag=args.tag, device="cpu"), figs, 0.1, tag=args.tag)


if __name__ == "__main__":
    main()
