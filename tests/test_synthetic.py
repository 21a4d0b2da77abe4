"""The synthetic experiments: the notebook under papermill, parameter checks, reproducibility of sub-sweeps."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mfh_nb.mvd import fig2_specs, fig3_specs
from mfh_nb.experiments.synthetic import run_sweep, summarise

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "21_synthetic.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "n_runs", "3", "-p", "out_dir", str(out), "-p", "device", "cpu", "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["n_runs"] == 3 and res["params"]["epochs"] == 1000 and res["params"]["rho"] == 0.5
    assert len(res["summary"]) == 11 and all(row["n_runs"] == 3 for row in res["summary"])
    assert len(res["runs"]) == 33
    assert {"torch", "numpy", "pandas", "mfh_nb", "python"} <= set(res["versions"])
    assert res["device"].startswith("cpu")
    for row in res["runs"]:                                   # accuracies in %, counted over the 1000 test samples
        for col in ("teacher_acc", "nokd_acc", "kd_acc"):
            assert abs(row[col] * 10 - round(row[col] * 10)) < 1e-4, (col, row[col])
    gammas = [round(r["gamma"], 2) for r in res["summary"] if r["experiment"] == "fig2"]
    assert gammas == [0.0, 0.11, 0.25, 0.43, 0.67, 1.0]
    for fig in ("fig2.png", "fig3.png"):
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(n_runs=0), ValueError, "n_runs"),
    (dict(n_train=2.5), TypeError, "n_train"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(rho=1.5), ValueError, "rho"),
    (dict(method="fast"), ValueError, "method"),
    (dict(device="nonsense"), ValueError, "device"),
])
def test_bad_parameters_fail_before_work(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        run_sweep({"fig2": fig2_specs()}, **kwargs)


def test_with_rho_1_the_kd_student_is_the_no_kd_student():
    # the KD and no-KD students of a run start from the same weights; at rho = 1 the teacher has no weight
    runs = run_sweep({"fig2": fig2_specs()[::5], "fig3": fig3_specs()[-1:]}, n_runs=2, epochs=100, rho=1.0, device="cpu")
    assert (runs.kd_acc == runs.nokd_acc).all() and (runs.delta == 0).all()
    assert (run_sweep({"fig2": fig2_specs()[-1:]}, n_runs=2, epochs=100, rho=0.5, device="cpu").delta != 0).any()


def test_a_sub_sweep_reproduces_the_rows_of_the_full_sweep():
    kw = dict(n_runs=2, epochs=50, device="cpu")
    both = run_sweep({"fig2": fig2_specs(), "fig3": fig3_specs()}, **kw)
    alone = run_sweep({"fig2": fig2_specs()}, **kw)
    cols = ["seed", "teacher_acc", "nokd_acc", "kd_acc"]
    assert (both[both.experiment == "fig2"][cols].reset_index(drop=True) == alone[cols]).all().all()
    assert summarise(alone).n_runs.tolist() == [2] * 6


# --- generated bad input: refused by name before anything is drawn or trained -----------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from mfh_nb.mvd import venn_spec  # noqa: E402

bad_count = st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), st.text(max_size=2), st.none())
BAD = {"n_runs": bad_count, "n_train": bad_count, "n_test": bad_count, "epochs": bad_count,
       "lr": st.one_of(st.floats(max_value=0), st.just(float("inf")), st.just(float("nan")), st.text(max_size=2)),
       "rho": st.one_of(st.floats().filter(lambda v: not 0 <= v <= 1), st.booleans()),
       "T": st.one_of(st.floats(max_value=0), st.floats(min_value=1e7)), "method": st.text(max_size=6).filter(lambda m: m not in ("batched", "naive")),
       "seed": st.one_of(st.integers(max_value=-1), st.floats(), st.booleans()),
       "device": st.text(min_size=1, max_size=6).filter(lambda s: s not in ("auto", "cpu") and not s.startswith("cpu:"))}


@settings(max_examples=80, deadline=None, derandomize=True)
@given(data=st.data(), name=st.sampled_from(sorted(BAD)))
def test_generated_bad_parameters_are_refused_by_name(data, name):
    value = data.draw(BAD[name])
    with pytest.raises((TypeError, ValueError), match=name):
        run_sweep({"fig2": fig2_specs()[:1]}, **{name: value})


@pytest.mark.parametrize("experiments,words", [({}, "non-empty dict"), ({"x": []}, "non-empty list of MVDSpec"),
                                                ({"x": ["spec"]}, "non-empty list of MVDSpec"),
                                                ({"x": [fig2_specs()[0], venn_spec(2, 1, 1, 5, 5, n_classes=3)]}, "same n_classes")])
def test_bad_sweeps_are_refused(experiments, words):
    with pytest.raises((TypeError, ValueError), match=words):
        run_sweep(experiments, n_runs=1, epochs=1)
