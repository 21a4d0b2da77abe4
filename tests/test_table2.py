"""Table 2 (mfh_nb.experiments.table2): the notebook under papermill, bad parameters, the ratio option."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mfh_nb.experiments.table2 import run_table2

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "22_table2.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "n_runs", "4", "-p", "M", "20", "-p", "out_dir", str(out), "-p", "device", "cpu", "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["n_runs"] == 4 and res["params"]["M"] == 20 and res["params"]["ratio"] is None
    assert len(res["summary"]) == 9 and len(res["runs"]) == 4 * 3 * 3
    assert {r["mode"] for r in res["runs"]} == {"gt", "alg1", "random"}
    by_run = {}
    for r in res["runs"]:
        assert r["kept"] == {0.25: 5, 0.5: 10, 0.75: 15}[round(r["gamma"], 2)]
        for col in ("teacher_acc", "mg_teacher_acc", "nokd_acc", "kd_acc", "mgkd_acc"):   # % of the 1000 test samples
            assert abs(r[col] * 10 - round(r[col] * 10)) < 1e-4, (col, r[col])
        by_run.setdefault((round(r["gamma"], 2), r["run"]), []).append(r)
    shared_by_modes = ("teacher_acc", "nokd_acc", "kd_acc", "alg1_precision", "alg1_auc")
    for rows in by_run.values():          # one regular teacher, no-KD and KD student and one ranking per run, for all modes
        assert len(rows) == 3 and len({tuple(r[c] for c in shared_by_modes) for r in rows}) == 1
        k, p, auc = rows[0]["kept"], rows[0]["alg1_precision"], rows[0]["alg1_auc"]
        assert auc_fits_precision(auc, p, k, d_a=50)
    assert res["elapsed_s"] > 0 and res["device"].startswith("cpu")
    assert (out / "table2.png").read_bytes()[:4] == b"\x89PNG"


def auc_fits_precision(auc: float, p: float, k: int, d_a: int) -> bool:
    "Whether a ranking of d_a channels whose top k hold p*k of the k shared ones can have this ROC AUC."
    inside, outside = round(p * k), d_a - k - (k - round(p * k))       # shared in the top k; others below the top k
    lowest = inside * outside / (k * (d_a - k))                         # those pairs are ordered right ...
    highest = 1 - (k - inside) ** 2 / (k * (d_a - k))                   # ... shared below vs others in the top k: wrong
    return lowest - 1e-9 <= auc <= highest + 1e-9


@pytest.mark.parametrize("kwargs,words", [(dict(M=0), "M must be positive"), (dict(ratio=1.0), "ratio must be in"),
                                          (dict(n_runs=0), "n_runs"), (dict(joint_momentum=1.0), "joint_momentum")])
def test_table2_bad_parameters(kwargs, words):
    with pytest.raises(ValueError, match=words):
        run_table2(**kwargs)


def test_table2_with_a_ratio_keeps_that_many_channels():
    df = run_table2(n_runs=1, M=2, ratio=0.6, epochs=20, joint_epochs=20, device="cpu")
    assert set(df[df["mode"] != "gt"].kept) == {20}
    assert set(df[df["mode"] == "gt"].kept) == {5, 10, 15}
