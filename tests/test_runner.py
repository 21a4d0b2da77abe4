"""mfh_nb.runner with real processes: a sweep killed with SIGKILL and rerun (finished cells not rerun, same results),
failing cells (a value the notebook rejects, an unknown parameter), bad input that stops before anything starts,
--force, the Slurm path through submitit's own mocked Slurm, the cell lock, the paper table, the console script."""
import configparser
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from mfh_nb.runner import (Entry, Progress, Resources, cell_lock, fingerprint, main, make_executor, paper_markdown,
                           paper_table, plan, plot_entry, preset_entries, read_record, run_cell, submit_array, wait_for,
                           write_record)

ROOT = Path(__file__).resolve().parents[1]
RUNNER = [sys.executable, "-c", "import sys; from mfh_nb.runner import main; sys.exit(main())"]


def tiny_notebook(path: Path) -> Path:
    "A notebook that logs each execution, rejects x < 0, sleeps x * delay s and writes score = 10x + seed/100 atomically."
    params = nbformat.v4.new_code_cell('x = 1\nseed = 0\ndelay = 0.0\nout_dir = "runs/tiny"')
    params.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell(
        "import json, os, pathlib, time\n"
        "out = pathlib.Path(out_dir); out.mkdir(parents=True, exist_ok=True)\n"
        "with open(out / 'executions.log', 'a') as f: f.write('run\\n')\n"
        "if x < 0: raise ValueError(f'x must be non-negative, got {x}')\n"
        "time.sleep(x * delay)\n"
        "score = 10 * x + seed / 100\n"
        "vs_paper = [dict(quantity='score', paper=10.0 * x, ours=score, ours_std=None, unit='points')]\n"
        "(out / 'tmp.json').write_text(json.dumps(dict(score=score, vs_paper=vs_paper)))\n"
        "os.replace(out / 'tmp.json', out / 'results.json')")
    nb = nbformat.v4.new_notebook(cells=[params, work])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(nb, path)
    return path


def executions(folder: Path) -> int:
    "How many times the tiny notebook started in this cell folder."
    log = folder / "executions.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def cell_folders(out: Path, entry: str = "tiny") -> list[Path]:
    return sorted(p for p in (out / entry).iterdir() if p.is_dir()) if (out / entry).is_dir() else []


def done_records(out: Path) -> dict[Path, int]:
    "The cells whose record says done, with the record's modification time."
    return {f: (f / "cell.json").stat().st_mtime_ns for f in cell_folders(out) if (read_record(f) or {}).get("status") == "done"}


@pytest.fixture
def tiny(tmp_path):
    return tiny_notebook(tmp_path / "tiny.ipynb")


@pytest.mark.parametrize("kill", ["group", "runner"])
def test_killed_sweep_resumes_without_rerunning_finished_cells(tmp_path, tiny, kill):
    """SIGKILL mid-sweep, then the same command: cells done before the kill are not rerun, the others complete, the
    numbers are those of an uninterrupted sweep. The kill comes when x = 0 is done and x = 1 (slower) is in flight.
    'group' kills the runner and its jobs (the kernels then exit), so cells in flight are rerun; 'runner' kills the
    runner alone, its jobs finish their cells, and the rerun waits on their locks instead of running them twice."""
    out = tmp_path / "sweep"
    args = ["sweep", str(tiny), "-p", "x", "[0, 1, 2]", "-p", "delay", "1.0", "--jobs", "2", "--out", str(out)]
    proc = subprocess.Popen(RUNNER + args, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not done_records(out) and proc.poll() is None and time.monotonic() < deadline: time.sleep(0.05)
        if kill == "group": os.killpg(proc.pid, signal.SIGKILL)
        else: proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = done_records(out)
    assert proc.returncode == -signal.SIGKILL and 1 <= len(before) < 3, "the kill did not land mid-sweep"
    assert main(args) == 0
    folders = cell_folders(out)
    assert len(folders) == 3 and all(read_record(f)["status"] == "done" for f in folders)
    assert {f: (f / "cell.json").stat().st_mtime_ns for f in before} == before          # not rerun, not rewritten
    assert all(executions(f) == 1 for f in before)
    if kill == "runner": assert [executions(f) for f in folders] == [1, 1, 1]          # the orphans' cells ran once
    cells = pd.read_csv(out / "cells.csv")
    assert cells.x.tolist() == [0, 1, 2] and cells.score.tolist() == [0.0, 10.0, 20.0]  # = an uninterrupted sweep
    assert (cells.status == "done").all()
    assert not list(out.rglob(".cell.json.tmp"))


def grid_file(tmp_path: Path, tiny: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump([dict(name="tiny", notebook=str(tiny), parameters=dict(x=[1, -1])),
                                    dict(name="typo", notebook=str(tiny), parameters=dict(X=1), what="a misspelt parameter")]))
    return path


def test_failures_are_kept_with_their_cells_and_rerun(tmp_path, tiny, capsys):
    """A value the notebook rejects and an unknown parameter fail their cells, with the error in the summary and the
    executed notebook kept; the sweep goes on; a rerun reruns failed cells only; --force reruns the rest."""
    out, grid = tmp_path / "sweep", grid_file(tmp_path, tiny)
    assert main(["paper", "--preset", str(grid), "--out", str(out), "--jobs", "2"]) == 1
    summary = capsys.readouterr().out
    assert "ValueError: x must be non-negative, got -1" in summary
    assert "ValueError: unknown parameter(s) ['X']" in summary and "defines ['delay', 'out_dir', 'seed', 'x']" in summary
    cells = pd.read_csv(out / "cells.csv")
    assert cells[["entry", "status"]].values.tolist() == [["tiny", "done"], ["tiny", "failed"], ["typo", "failed"]]
    failing = out / "tiny" / cells.cell[1]
    assert "x must be non-negative" in (failing / "executed.ipynb").read_text() and not (failing / "results.json").exists()
    paper = (out / "paper.md").read_text()
    assert f"made by `mfh-run paper --preset {grid}" in paper
    assert f"| tiny | score | 10.00 | 10.00 | +0.00 | points | 1 | `mfh-run sweep {tiny} -p x 1` |" in paper
    good = out / "tiny" / cells.cell[0]
    assert main(["sweep", "-f", str(grid), "--out", str(out), "--cluster", "debug"]) == 1
    assert (executions(good), executions(failing)) == (1, 2)
    assert main(["sweep", str(tiny), "-p", "x", "1", "--out", str(out), "--cluster", "debug", "--force"]) == 0
    assert (executions(good), executions(failing)) == (2, 2)


@pytest.mark.parametrize("args,words", [
    (["sweep", "nbs/99_missing.ipynb"], "notebook nbs/99_missing.ipynb not found"),
    (["sweep", "{tiny}", "-p", "x", "[]"], "'x' has an empty list of values"),
    (["sweep", "{tiny}", "-p", "out_dir", "/tmp/x"], "out_dir is set by the runner"),
    (["sweep", "{tiny}", "-p", "x", "1", "-p", "x", "2"], "given twice"),
    (["sweep"], "give a notebook or a grid file"),
    (["paper", "--preset", "gpu"], "give --data-root"),
    (["sweep", "{tiny}", "--cluster", "slurm"], "needs a time limit"),
    (["sweep", "{tiny}", "--devices", "0", "--gpus-per-job", "2"], "2 GPU(s) per job requested"),
])
def test_bad_input_fails_before_anything_starts(tmp_path, tiny, capsys, args, words):
    out = tmp_path / "sweep"
    assert main([a.format(tiny=tiny) for a in args] + ["--out", str(out)]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_slurm_array_script_and_jobs(tmp_path, tiny):
    """The Slurm path with submitit's mocked Slurm: the sbatch script carries the options, and the array's jobs,
    run by submitit's own job machinery, record their cells (threads = CPUs per job)."""
    from submitit.core import submission
    from submitit.slurm.test_slurm import mocked_slurm
    res = Resources(cluster="slurm", jobs=2, gpus_per_job=1, cpus_per_job=4, time_min=90, partition="gpu", mem_gb=16)
    cells = plan([Entry("tiny", str(tiny), dict(x=[1, 2]))], tmp_path / "sweep")
    with mocked_slurm() as mock:
        pending = submit_array([replace(c, threads=4) for c in cells], make_executor(res, tmp_path / "subm"))
        script = next((tmp_path / "subm").glob("*_submission.sh")).read_text().splitlines()
        for flag in ["--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=4", "--time=90", "--mem=16GB",
                     "--array=0-1%2", "--job-name=mfh-run"]:
            assert f"#SBATCH {flag}" in script, flag
        for job, _ in pending:
            with mock.job_context(job.job_id): submission.process_job(job.paths.folder)
        wait_for(pending, Progress(2, 0, echo=lambda s: None), poll_s=0.01)
    records = [read_record(c.dir) for c in cells]
    assert [(r["status"], r["threads"]) for r in records] == [("done", 4), ("done", 4)]


def test_a_second_job_waits_for_the_cell_lock_and_does_not_rerun(tmp_path, tiny):
    cell = plan([Entry("tiny", str(tiny), dict(x=3))], tmp_path / "sweep")[0]
    folder = Path(cell.dir)
    with cell_lock(folder):
        (folder / "results.json").write_text('{"score": 30.0}')
        write_record(folder, dict(status="running", fingerprint=fingerprint(cell)))
        got = []
        second = threading.Thread(target=lambda: got.append(run_cell(cell)))
        second.start(); time.sleep(0.5)
        assert second.is_alive() and not got                      # waiting for the lock
        write_record(folder, dict(status="done", fingerprint=fingerprint(cell)))
    second.join(timeout=30)
    assert got[0]["status"] == "done" and not (folder / "executed.ipynb").exists()


def fake_cell(cell, score: float, std=None, paper=10.0):
    "Write a complete cell by hand (record and results), as a finished job would."
    folder = Path(cell.dir); folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(dict(score=score, vs_paper=[
        dict(quantity="Table 8: MG student", paper=paper, ours=score, ours_std=std, unit="%")])))
    write_record(folder, dict(status="done", fingerprint=fingerprint(cell)))


def test_paper_table_merges_seeds_and_keeps_settings_apart(tmp_path, tiny):
    cells = plan([Entry("ravdess", str(tiny), dict(x=[1, 2], seed=[0, 1, 2], delay=0.0)),
                  Entry("digits", str(tiny), dict(x=5), what="no paper number")], tmp_path / "sweep")
    for c in cells[:6]: fake_cell(c, 70.0 + 2 * c.params["x"] + c.params["seed"])
    fake_cell(cells[6], 55.5, std=1.25, paper=None)
    table = paper_table(cells)
    assert table[["experiment", "runs"]].values.tolist() == [["ravdess", 3], ["ravdess", 3], ["digits", 1]]
    assert table.ours.tolist() == [73.0, 75.0, 55.5] and table.ours_std.tolist() == [1.0, 1.0, 1.25]
    assert table.difference.tolist()[:2] == [63.0, 65.0] and pd.isna(table.difference[2])
    assert table.command[0] == f"mfh-run sweep {tiny} -p x 1 -p seed '[0, 1, 2]' -p delay 0.0"
    md = paper_markdown(table)
    assert "| ravdess | Table 8: MG student | 10.00 | 73.00 ± 1.00 | +63.00 | % | 3 |" in md
    assert "| digits | Table 8: MG student | – | 55.50 ± 1.25 | – | % | 1 |" in md
    fig = plot_entry(cells[:6])
    assert fig is not None and fig.axes[0].get_xlabel() == "x"
    assert plot_entry(cells[6:]) is None


def test_dry_run_lists_cells_and_names_unknown_parameters(tmp_path, tiny, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "-f", str(grid_file(tmp_path, tiny)), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.count("to do") == 3 and "typo: unknown parameter(s) ['X']" in text
    assert not (out / "tiny").exists()


def test_a_preset_file_without_data_root_keeps_its_values(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump([dict(name="t", notebook="nbs/21_synthetic.ipynb", parameters=dict(device="cpu", n_runs=[1, 2]))]))
    assert preset_entries(str(path)) == [Entry("t", "nbs/21_synthetic.ipynb", dict(device="cpu", n_runs=[1, 2]))]


def test_console_script_is_declared():
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    name, target = cfg["DEFAULT"]["console_scripts"].split("=")
    module, func = target.split(":")
    assert name == "mfh-run" and getattr(importlib.import_module(module), func) is main
    assert 'cfg.get("console_scripts", "").split()' in (ROOT / "setup.py").read_text()
    with pytest.raises(SystemExit) as e: main(["--help"])
    assert e.value.code == 0
