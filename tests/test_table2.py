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
    for r in res["runs"]:
        assert r["gain"] == pytest.approx(r["mgkd_acc"] - r["kd_acc"])
        assert r["kept"] == {0.25: 5, 0.5: 10, 0.75: 15}[round(r["gamma"], 2)]
        assert 0.5 <= r["alg1_auc"] <= 1.0
    assert res["elapsed_s"] > 0 and res["device"].startswith("cpu")
    assert (out / "table2.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kwargs,words", [(dict(M=0), "M must be positive"), (dict(ratio=1.0), "ratio must be in"),
                                          (dict(n_runs=0), "n_runs"), (dict(joint_momentum=1.0), "joint_momentum")])
def test_table2_bad_parameters(kwargs, words):
    with pytest.raises(ValueError, match=words):
        run_table2(**kwargs)


def test_table2_with_a_ratio_keeps_that_many_channels():
    df = run_table2(n_runs=1, M=2, ratio=0.6, epochs=20, joint_epochs=20, device="cpu")
    assert set(df[df["mode"] != "gt"].kept) == {20}
    assert set(df[df["mode"] == "gt"].kept) == {5, 10, 15}
