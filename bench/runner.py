"""Overhead per cell of the sweep runner, on a trivial notebook (it computes nothing and writes results.json).

Three ways to run the same cells, timed in one process:
  papermill    papermill.execute_notebook, one cell after the other in this process (kernel start + papermill:
               the baseline; papermill is imported once, before timing)
  runner x1    mfh_nb.runner through submitit's local executor, 1 job at a time (each cell also starts submitit's
               controller and a job process, which imports the runner and papermill)
  runner x2    the same, 2 jobs at a time
Prints wall time, cells/s, the ratio of cells/s to the baseline, and the CPU seconds per cell of this process and
every process it waited for (kernels, submitit's controllers and jobs): the CPU figure moves less than wall times
when other work shares the machine. With --device cuda each runner job gets one GPU (jobs at once are then bounded
by the GPU count).

    python bench/runner.py [--cells 6] [--device cpu|cuda]
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

import nbformat
import papermill

from mfh_nb.runner import Entry, Resources, available_cpus, run_sweep, visible_gpus


def trivial_notebook(path: Path) -> Path:
    "A notebook with a parameters cell (x, out_dir) that only writes results.json."
    params = nbformat.v4.new_code_cell('x = 0\nout_dir = "runs/trivial"')
    params.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell("import json, pathlib\npathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
                                     "(pathlib.Path(out_dir) / 'results.json').write_text(json.dumps(dict(x=x)))")
    nb = nbformat.v4.new_notebook(cells=[params, work])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(nb, path)
    return path


def cpu_seconds() -> float:
    "CPU time of this process and of the children it has waited for."
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def time_papermill(nb: Path, out: Path, cells: int) -> float:
    "Wall time of `cells` papermill executions in this process."
    out.mkdir()
    t0 = time.perf_counter()
    for i in range(cells):
        papermill.execute_notebook(str(nb), str(out / f"{i}.ipynb"), parameters=dict(x=i, out_dir=str(out / str(i))), progress_bar=False)
    return time.perf_counter() - t0


def time_runner(nb: Path, out: Path, cells: int, jobs: int, devices: list[str]) -> float:
    "Wall time of a sweep of `cells` cells through the runner with `jobs` local jobs at a time."
    res = Resources(jobs=jobs, devices=devices, gpus_per_job=1 if devices else 0)
    t0 = time.perf_counter()
    table, _ = run_sweep([Entry("trivial", str(nb), dict(x=list(range(cells))))], out, res, echo=lambda line: None)
    elapsed = time.perf_counter() - t0
    assert (table.status == "done").all(), table
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=6)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    devices = visible_gpus() if args.device == "cuda" else []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nb = trivial_notebook(tmp / "trivial.ipynb")
        time_papermill(nb, tmp / "warmup", 1)
        timings, cpu = {}, {}
        for jobs in (0, 1, 2):
            mode, c0 = f"runner x{jobs}" if jobs else "papermill", cpu_seconds()
            timings[mode] = time_runner(nb, tmp / mode, args.cells, jobs, devices) if jobs else time_papermill(nb, tmp / mode, args.cells)
            cpu[mode] = cpu_seconds() - c0
    print(f"{args.cells} cells of a trivial notebook, {available_cpus()} CPUs, devices: {devices or 'none (CPU jobs)'}")
    print(f"{'mode':12s} {'wall s':>8s} {'cells/s':>8s} {'s/cell':>7s} {'vs papermill':>13s} {'CPU s/cell':>11s}")
    base = args.cells / timings["papermill"]
    for mode, t in timings.items():
        print(f"{mode:12s} {t:8.1f} {args.cells / t:8.3f} {t / args.cells:7.2f} {args.cells / t / base:12.2f}x {cpu[mode] / args.cells:11.2f}")


if __name__ == "__main__":
    main()
