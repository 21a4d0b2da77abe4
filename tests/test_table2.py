"""Table 2 (mfh_nb.experiments.table2): the notebook under papermill, bad parameters, the ratio option."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mfh_nb.experiments.table2 import run_table2

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_runs_under_papermill(tmp_path):
    # seed 5 (the notebook's asserts were tuned on seeds 0-4): its per-setting asserts must hold for another seed too
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "22_table2.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "seed", "5", "-p", "out_dir", str(out), "-p", "device", "cpu", "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["seed"] == 5 and res["params"]["n_runs"] == 10 and res["params"]["ratio"] is None
    assert len(res["summary"]) == 9 and len(res["runs"]) == 10 * 3 * 3 * 2
    assert {(r["mode"], r["kd_weighting"]) for r in res["runs"]} == {(m, w) for m in ("gt", "alg1", "random") for w in ("paper", "reference")}
    by_run = {}
    for r in res["runs"]:
        assert r["kept"] == {0.25: 5, 0.5: 10, 0.75: 15}[round(r["gamma"], 2)]
        for col in ("teacher_acc", "mg_teacher_acc", "nokd_acc", "kd_acc", "mgkd_acc"):   # % of the 1000 test samples
            assert abs(r[col] * 10 - round(r[col] * 10)) < 1e-4, (col, r[col])
        by_run.setdefault((round(r["gamma"], 2), r["run"]), []).append(r)
    for rows in by_run.values():          # one regular teacher, no-KD student and ranking per run; one KD student per weighting
        assert len(rows) == 6 and len({tuple(r[c] for c in ("teacher_acc", "nokd_acc", "alg1_precision", "alg1_auc")) for r in rows}) == 1
        assert len({(r["kd_weighting"], r["kd_acc"]) for r in rows}) == 2
        k, p, auc = rows[0]["kept"], rows[0]["alg1_precision"], rows[0]["alg1_auc"]
        assert auc_fits_precision(auc, p, k, d_a=50)
    vs = res["vs_paper"]
    assert len(vs) == 3 * 7 and {r["unit"] for r in vs} == {"%"} and all(r["paper"] is not None and r["ours_std"] >= 0 for r in vs)
    assert res["elapsed_s"] > 0 and res["device"].startswith("cpu")
    assert (out / "table2.png").read_bytes()[:4] == b"\x89PNG"


def test_weightings_trained_together_equal_each_trained_alone():
    # the KD students of both weightings share one batch; each must come out as if trained on its own
    kw = dict(n_runs=2, M=2, epochs=30, joint_epochs=10, device="cpu")
    both = run_table2(**kw)
    for w in ("paper", "reference"):
        pd.testing.assert_frame_equal(both[both.kd_weighting == w].reset_index(drop=True), run_table2(kd_weightings=(w,), **kw))


def auc_fits_precision(auc: float, p: float, k: int, d_a: int) -> bool:
    "Whether a ranking of d_a channels whose top k hold p*k of the k shared ones can have this ROC AUC."
    inside, outside = round(p * k), d_a - k - (k - round(p * k))       # shared in the top k; others below the top k
    lowest = inside * outside / (k * (d_a - k))                         # those pairs are ordered right ...
    highest = 1 - (k - inside) ** 2 / (k * (d_a - k))                   # ... shared below vs others in the top k: wrong
    return lowest - 1e-6 <= auc <= highest + 1e-6                   # binary_auroc is float32


@pytest.mark.parametrize("kwargs,words", [(dict(M=0), "M must be positive"), (dict(ratio=1.0), "ratio must be in"),
                                          (dict(n_runs=0), "n_runs"), (dict(joint_momentum=1.0), "joint_momentum"),
                                          (dict(kd_weightings="paper"), "kd_weightings"), (dict(kd_weightings=("ours",)), "kd_weightings")])
def test_table2_bad_parameters(kwargs, words):
    with pytest.raises(ValueError, match=words):
        run_table2(**kwargs)


def test_table2_with_a_ratio_keeps_that_many_channels():
    df = run_table2(n_runs=1, M=2, ratio=0.6, epochs=20, joint_epochs=20, device="cpu")
    assert set(df[df["mode"] != "gt"].kept) == {20}
    assert set(df[df["mode"] == "gt"].kept) == {5, 10, 15}
