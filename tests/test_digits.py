"""The split-view digits experiment: the notebook under papermill with small parameters, and bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mfh_nb.data.digits import digit_splits, load_digit_images, overlap_view, shared_pixels, split_view, view_gamma
from mfh_nb.experiments.digits import check_digits_params, kd_run

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "23_digits.ipynb"), str(tmp_path / "executed.ipynb"),
           "-y", "{overlaps: [0, 8], alg1_overlaps: [4]}", "-p", "n_runs", "1", "-p", "epochs", "8",
           "-p", "M", "4", "-p", "out_dir", str(out), "-p", "device", "cpu", "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["overlaps"] == [0, 8] and res["params"]["epochs"] == 8
    assert [r["gamma"] for r in res["q1_runs"]] == [0.0, 1.0]
    assert {r["teacher"] for r in res["q23_runs"]} == {"regular", "modality-general", "random", "modality-specific"}
    images, labels = load_digit_images()
    n_test = len(digit_splits(labels)["test"])
    for r in res["q1_runs"] + res["q23_runs"]:                  # accuracies in %, counted over the test split
        for col in [c for c in r if c.endswith("_acc")]:
            assert abs(r[col] * n_test / 100 - round(r[col] * n_test / 100)) < 1e-4, (col, r[col])
    for fig in res["figures"]:
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"


def test_with_rho_1_the_kd_student_is_the_no_kd_student():
    # the KD and no-KD students of a run start from the same weights and see the same batches; at rho = 1 the
    # teacher has no weight, so the two must end identical
    images, labels = load_digit_images()
    splits = digit_splits(labels)
    r = kd_run(images, labels, splits, 2, 0, epochs=2, rho=1.0, seed=0, device="cpu")
    assert r["kd_acc"] == r["nokd_acc"] and r["gain"] == 0


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(overlaps=[0, 9]), ValueError, "overlap must be an int in"),
    (dict(overlaps="0,2"), TypeError, "overlaps must be a list"),
    (dict(alg1_overlaps=[0]), ValueError, "needs shared columns"),
    (dict(n_runs=0), ValueError, "n_runs"),
    (dict(rho=-1), ValueError, "rho"),
    (dict(ratio=1.0), ValueError, "ratio"),
])
def test_bad_parameters(kwargs, exc, words):
    args = dict(overlaps=[0, 2], alg1_overlaps=[2], n_runs=1, epochs=1, rho=0.5, ratio=0.5, M=2)
    with pytest.raises(exc, match=words):
        check_digits_params(**{**args, **kwargs})


def test_views_share_exactly_the_overlap_columns():
    images, _ = load_digit_images()
    for o in range(9):
        c_a, c_b = overlap_view(o)
        v = split_view(images, c_a, c_b)
        shared = shared_pixels(c_a, c_b)
        assert int(shared.sum()) == 8 * o and view_gamma(c_a, c_b) == o / 8
        assert v["a"].shape[1] == 8 * c_a and v["b"].shape[1] == 8 * (8 - c_b)
        a_cols = v["a"].reshape(-1, 8, c_a)[:, :, c_b:]
        b_cols = v["b"].reshape(-1, 8, 8 - c_b)[:, :, :max(0, c_a - c_b)]
        assert (a_cols == b_cols).all()
    with pytest.raises(ValueError, match="c_b must be in"):
        split_view(images, 4, 8)
