"""AV-MNIST: the experiment notebook under papermill on a user-supplied data folder, the loader's memory maps and
workers, the cached teacher against the live one, the comparison with the paper, and bad input."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from mfh_nb.data.avmnist import AVMNIST, SPLIT_FILES, avmnist_loaders, write_fixture
from mfh_nb.experiments.avmnist import (PAPER, PAPER_TEACHERS, CachedTeacher, check_avmnist_params, outputs_on, run_table5,
                                        summarise, vs_paper)
from mfh_nb.models.avmnist import multimodal_teacher

from papermill_check import assert_refused_before_any_work

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("avmnist") / "avmnist", n_train=60, n_test=20, seed=3)


def test_notebook_runs_on_a_data_folder_under_papermill(data, tmp_path):
    "The path a user with the real data takes: -p data_dir, a validation size that fits, tiny training."
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "24_avmnist.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "data_dir", str(data), "-p", "val_size", "20", "-p", "train_size", "30", "-p", "epochs", "1",
           "-p", "M", "2", "-p", "batch_size", "10", "-y", "rhos: [0.5]", "-p", "device", "cpu", "-p", "out_dir", str(out),
           "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["fixture"] is False and res["params"]["val_size"] == 20 and res["params"]["rhos"] == [0.5]
    assert [(r["setting"], r["rho"]) for r in res["runs"]] == [("No-KD", 0.5), ("UM-KD", 0.5), ("CM-KD", 0.5), ("MG-KD", 0.5)]
    assert res["runs"][0]["teacher_acc"] is None                      # No-KD has no teacher: null, not NaN
    quantities = [r["quantity"] for r in res["vs_paper"]]
    assert quantities == ["Table 1 / Table 5: No-KD student, rho=0.5", "Table 1 / Table 5: UM-KD student, rho=0.5",
                          "Table 1 / Table 5: CM-KD student, rho=0.5", "Table 1 / Table 5: UM-KD teacher (A)",
                          "Table 1 / Table 5: CM-KD teacher (I+A)"]
    assert [r["paper"] for r in res["vs_paper"]] == [68.36, 70.10, 69.73, 84.57, 91.61]
    assert (out / "teacher_vs_student.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_parameter_fails_before_any_work(tmp_path):
    assert_refused_before_any_work("24_avmnist.ipynb", tmp_path, {"epochs": 0}, "epochs must be positive")


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(n_runs=0), ValueError, "n_runs must be positive"),
    (dict(epochs=1.5), TypeError, "epochs must be an int"),
    (dict(rhos=0.5), TypeError, "rhos must be a non-empty list"),
    (dict(rhos=[0.5, 1.5]), ValueError, "rho must be a number in"),
    (dict(rhos=[0.5, 0.5]), ValueError, "repeated"),
    (dict(ratio=1.0), ValueError, "ratio must be in"),
    (dict(lr=-1), ValueError, "lr must be positive"),
    (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (dict(num_workers=-1), ValueError, "num_workers"),
])
def test_bad_parameters(kwargs, exc, words):
    args = dict(n_runs=1, epochs=1, rhos=[0.0, 0.5], ratio=0.5, M=2, batch_size=4, lr=0.1, weight_decay=0.0, num_workers=0)
    with pytest.raises(exc, match=words):
        check_avmnist_params(**{**args, **kwargs})


def copy_of(data: Path, to: Path) -> Path:
    "A copy of the fixture's six files under `to`."
    for rel in SPLIT_FILES["train"] + SPLIT_FILES["test"]:
        (to / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(to / rel, np.load(data / rel))
    return to


def test_run_table5_checks_files_before_training(data, tmp_path):
    bad = copy_of(data, tmp_path / "bad")
    np.save(bad / "test_labels.npy", np.load(data / "test_labels.npy").astype(np.float32))
    with pytest.raises(ValueError, match="test_labels.npy has dtype float32"):
        run_table5(bad, n_runs=1, epochs=1, val_size=20, device="cpu")
    with pytest.raises(ValueError, match="is a file"):
        run_table5(data / "train_labels.npy", n_runs=1, epochs=1, device="cpu")


def test_missing_and_damaged_files_are_named(data, tmp_path):
    "A file that is absent, cut short (an interrupted copy) or holds labels outside 0..9: the error names that file."
    missing = copy_of(data, tmp_path / "missing")
    (missing / "audio/test_data.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"audio/test_data.npy is missing"):
        avmnist_loaders(missing, val_size=20)
    cut = copy_of(data, tmp_path / "cut")
    raw = (cut / "audio/train_data.npy").read_bytes()
    (cut / "audio/train_data.npy").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match=r"audio/train_data.npy is not a readable .npy array"):
        run_table5(cut, n_runs=1, epochs=1, val_size=20, device="cpu")
    labels = copy_of(data, tmp_path / "labels")
    np.save(labels / "train_labels.npy", np.load(data / "train_labels.npy") + 5)
    with pytest.raises(ValueError, match=r"train_labels.npy holds labels \[10, 11, 12, 13, 14\] outside 0..9"):
        run_table5(labels, n_runs=1, epochs=1, val_size=20, device="cpu")


def test_loader_maps_files_and_workers_give_the_same_batches(data):
    ds = AVMNIST(data, "train", val_size=20)
    first = ds[5]
    assert all(isinstance(a, np.memmap) for a in ds.arrays)           # rows are read from the maps, nothing loaded whole
    assert pickle.loads(pickle.dumps(ds)).arrays is None                # workers open their own maps
    serial = next(iter(DataLoader(ds, batch_size=40)))
    parallel = next(iter(DataLoader(ds, batch_size=40, num_workers=2)))
    for k in ("a", "b", "y", "i"): assert torch.equal(serial[k], parallel[k])
    assert torch.equal(serial["b"][5], first["b"]) and len(ds) == 40


def test_cached_teacher_matches_the_live_teacher_on_shuffled_batches(data):
    loaders = avmnist_loaders(data, val_size=20, batch_size=8, seed=1)
    torch.manual_seed(0)
    teacher = multimodal_teacher().eval()
    ordered = DataLoader(loaders["train"].dataset, batch_size=16)
    cached = CachedTeacher(outputs_on(teacher, ("a", "b"), ordered, "cpu"))
    batch = next(iter(loaders["train"]))
    assert not torch.equal(batch["i"], torch.arange(8))                 # a shuffled batch
    with torch.no_grad():
        torch.testing.assert_close(cached(batch["i"]), teacher(batch["a"], batch["b"]), rtol=1e-4, atol=1e-5)


def test_vs_paper_pairs_each_number_with_its_table():
    runs = pd.DataFrame([dict(run=r, setting=s, teacher=t, rho=rho, teacher_acc=ta + r, student_acc=50 + r + rho)
                         for r in range(2) for rho in (0.0, 0.5)
                         for s, t, ta in (("No-KD", "-", float("nan")), ("UM-KD", "A", 60.0), ("CM-KD", "I+A", 80.0))])
    df = vs_paper(summarise(runs)).set_index("quantity")
    assert len(df) == 8 and set(df.unit) == {"%"}
    assert df.loc["Table 5: CM-KD student, rho=0", "paper"] == PAPER[("CM-KD", 0.0)][0] == 69.46
    assert df.loc["Table 1 / Table 5: UM-KD student, rho=0.5", "ours"] == pytest.approx(51.0)
    assert df.loc["Table 1 / Table 5: CM-KD teacher (I+A)", "paper"] == PAPER_TEACHERS["CM-KD"]
    assert df.loc["Table 1 / Table 5: CM-KD teacher (I+A)", "ours"] == pytest.approx(80.5)
    assert df.loc["Table 1 / Table 5: CM-KD teacher (I+A)", "ours_std"] == pytest.approx(np.std([80, 81], ddof=1))
