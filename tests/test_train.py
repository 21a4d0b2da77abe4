"""mfh_nb.train in real processes: a training job killed with SIGKILL and restarted ends with the same numbers as an
uninterrupted one; a 2-process gloo DDP job agrees with the 1-process job."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

JOB = Path(__file__).with_name("train_job.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")


def run_job(out: Path, *args: str) -> dict:
    subprocess.run([sys.executable, str(JOB), "--out", str(out), *args], check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def kill_when(line_prefix: str, ckpt: Path, out: Path, extra_delay: float) -> None:
    "Start the job, wait for a line starting with `line_prefix`, wait `extra_delay` s more, then SIGKILL it."
    proc = subprocess.Popen([sys.executable, str(JOB), "--out", str(out), "--ckpt", str(ckpt)],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith(line_prefix): break
        time.sleep(extra_delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == -signal.SIGKILL and not out.exists(), "the job finished before it could be killed"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_job(tmp_path_factory.mktemp("plain") / "r.json")


@pytest.mark.parametrize("line_prefix,delay", [("teacher epoch 1", 0.0), ("student epoch 2", 0.05),
                                               ("student epoch 0", random.uniform(0.0, 0.3))])
def test_killed_job_resumes_to_the_same_result(tmp_path, uninterrupted, line_prefix, delay):
    kill_when(line_prefix, tmp_path / "ckpt", tmp_path / "r.json", delay)
    assert (tmp_path / "ckpt" / "teacher" / "checkpoint.pt").exists()
    resumed = run_job(tmp_path / "r.json", "--ckpt", str(tmp_path / "ckpt"))
    assert resumed["student"]["resumed_from"] is not None or resumed["teacher"]["resumed_from"] is not None
    for name in ("teacher", "student"):
        for key in ("history", "best_epoch", "best_val", "test", "weights"):
            assert resumed[name][key] == uninterrupted[name][key], (name, key)
    assert not list((tmp_path / "ckpt").rglob("*.tmp"))


def test_two_process_gloo_job_agrees_with_one_process(tmp_path):
    one = run_job(tmp_path / "one.json", "--batch-size", "2048")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(JOB), "--out", str(tmp_path / "two.json"),
                    "--batch-size", "1024"], check=True, capture_output=True, text=True, env=env, timeout=300)
    two = json.loads((tmp_path / "two.json").read_text())
    for name in ("teacher", "student"):
        for h1, h2 in zip(one[name]["history"], two[name]["history"]):
            assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-4)
            assert h2["val"] == pytest.approx(h1["val"], abs=1 / 256 + 1e-9)
        assert two[name]["weights"] == pytest.approx(one[name]["weights"], rel=1e-3, abs=1e-4)
        assert two[name]["test"] == pytest.approx(one[name]["test"], abs=2 / 512)
