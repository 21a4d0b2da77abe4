"""Theorem 1 (mfh_nb.theory): the notebook under papermill, golden values of Lemma 1, bad input, batched = one at a time."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mfh_nb import mvd
from mfh_nb.experiments.theory import (check_theory_params, draw_problem, overlap_specs, run_lemma2, run_perturbation,
                                       run_theorem1)
from mfh_nb.theory import (epsilon_star, eq4_epsilon, fit_student, gram_gap, l_dis, lemma1_argmax, lemma1_max, lemma1_max_inverse,
                           lemma2_lhs, r_dis, theorem1_bound, theorem_lambda, theta_star)

ROOT = Path(__file__).resolve().parents[1]

# Lemma 1's f(ε) = ε/(1-e^-ε) - 1 - ln(ε/(1-e^-ε)) and the proof's maximiser a* = -ln t*, evaluated with mpmath at
# 60 significant digits (mp.dps = 60), independently of the float64 code. For ε = 0.5 and 1 the values were also
# confirmed by maximising l(a + ε, a) over a numerically (mpmath.findroot on the derivative), without the closed form.
GOLDEN_F = {
    1e-6: 1.2499999999999826389e-13,
    0.05: 0.00031248914990833558537,
    0.0999: 0.0012473283706324801249,
    0.1: 0.0012498264274598375031,
    0.3: 0.01123596556411409378,
    0.5: 0.031142092261155879588,
    1.0: 0.12330156148224453336,
    2.0: 0.47447464707052693725,
    10.0: 6.6978235259556807045,
    50.0: 45.087976994571853941,
    1000.0: 992.09224472101786295,
    1e6: 999985.18448944203573,
}
GOLDEN_ARGMAX = {
    0.001: -0.00033333333086419756026,
    0.05: -0.016666358033876875944,
    0.0999: -0.033297538556645521407,
    0.1: -0.033330864491442944873,
    0.5: -0.16635894072255253801,
    1.0: -0.33089326820405453357,
    5.0: -1.4292450265764943327,
    20.0: -2.9444390225591492376,
}


def test_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "out"
    params = dict(n=100, d=4, n_settings=5, n_draws=3, steps=300, n_lemma2=20, seed=1)
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "20_theory.ipynb"), str(tmp_path / "executed.ipynb")]
    for k, v in params.items(): cmd += ["-p", k, str(v)]
    cmd += ["-p", "out_dir", str(out), "-p", "device", "cpu", "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert {k: res["params"][k] for k in params} == params and res["params"]["step"] == 0.2
    assert res["device"].startswith("cpu") and {"torch", "numpy", "pandas", "mfh_nb", "python"} <= set(res["versions"])
    table = res["theorem1"]
    assert len(table) == 10 and all(row["n_draws"] == 3 for row in table)
    assert len(res["theorem1_draws"]) == 30
    for scaling in ("raw", "1/sqrt(n)"):
        rows = [r for r in table if r["scaling"] == scaling]
        assert [round(r["gamma"], 3) for r in rows] == [0.0, 0.143, 0.333, 0.6, 1.0]      # k / (2d - k), d = 4
        assert all(r["trained_le_star"] == 1.0 for r in rows)
        assert all(r["vacuous"] == 1.0 for r in rows[:-1]) and rows[-1]["vacuous"] == 0.0
        assert rows[-1]["bound"] == 0.0 and rows[-1]["gap"] == 0.0 and abs(rows[-1]["r_star"]) < 1e-12
        stars = [r["r_star"] for r in rows]
        assert all(b < a for a, b in zip(stars, stars[1:]))
        assert all(r["lam"] >= 1 for r in rows)
        one_eps = [r["bound_one_eps"] for r in rows]                     # the theorem as stated: decreasing in γ, 0 at γ = 1
        assert all(b < a for a, b in zip(one_eps, one_eps[1:])) and one_eps[-1] == 0.0
        assert rows[-2]["eps4"] > rows[0]["eps4"]                        # Eq. 4's smallest ε grows with γ on MVD data
    raw = [r for r in table if r["scaling"] == "raw"]
    assert all(r["bound_over_trivial"] > 1e6 for r in raw[:-1])        # vacuous by orders of magnitude
    checks = res["checks"]
    assert checks["lemma1_max_abs_error"] < 1e-6 and checks["lemma1_argmax_max_error"] <= 2e-3
    assert checks["lemma2_holds"] is True and checks["lemma2_draws"] == 40
    assert {r["scaling"] for r in res["perturbation"]} == {"raw", "1/sqrt(n)"}
    assert [(r["paper"], r["unit"]) for r in res["vs_paper"]] == [(0.0, "nats (sum over n samples)")] * 2
    assert all(abs(r["ours"]) < 1e-12 for r in res["vs_paper"])
    for fig in ("lemma1", "lemma2", "theorem1", "perturbation"):
        assert (out / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("eps", list(GOLDEN_F))
def test_lemma1_max_matches_golden_values(eps):
    assert lemma1_max(eps).item() == pytest.approx(GOLDEN_F[eps], rel=1e-13)


@pytest.mark.parametrize("eps", list(GOLDEN_ARGMAX))
def test_lemma1_argmax_matches_golden_values(eps):
    assert lemma1_argmax(eps).item() == pytest.approx(GOLDEN_ARGMAX[eps], rel=1e-12)


def test_lemma1_max_edge_cases():
    assert lemma1_max(0.0).item() == 0.0 and lemma1_argmax(0.0).item() == 0.0
    eps = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-300, 6, 5000, dtype=torch.float64)])
    f = lemma1_max(eps)
    assert torch.isfinite(f).all() and (f >= 0).all() and (f.diff() >= 0).all()
    assert lemma1_max([[0.5, 1.0], [2.0, 10.0]]).shape == (2, 2)
    a_star = lemma1_argmax(1.0).item()                                  # the maximum is attained at a*, both signs
    one = torch.tensor(1.0, dtype=torch.float64)
    assert l_dis(torch.tensor(a_star + 1.0, dtype=torch.float64), torch.tensor(a_star, dtype=torch.float64)).item() \
        == pytest.approx(lemma1_max(one).item(), rel=1e-12)
    assert l_dis(torch.tensor(-a_star - 1.0, dtype=torch.float64), torch.tensor(-a_star, dtype=torch.float64)).item() \
        == pytest.approx(lemma1_max(one).item(), rel=1e-12)
    v = torch.tensor([0.0, 1e-10, 0.7, 50.0], dtype=torch.float64)
    assert torch.allclose(lemma1_max(lemma1_max_inverse(v)), v, rtol=1e-12, atol=1e-300)


def test_theorem1_bound_formula():
    # λ = 1: λ^1.5(λ² + 1) = 2, so ε* = 2 (1 - γ) ε
    assert theorem1_bound(200, 1.0, 0.5, 0.1).item() == pytest.approx(200 * GOLDEN_F[0.1], rel=1e-13)
    assert epsilon_star(2.0, 0.25, 3.0).item() == pytest.approx(2**1.5 * 5 * 0.75 * 3)
    assert theorem1_bound(10, 5.0, 1.0, 7.0).item() == 0.0                   # γ = 1: the bound vanishes
    g = torch.linspace(0, 1, 11, dtype=torch.float64)
    b = theorem1_bound(50, 1.5, g, 0.2)
    assert (b.diff() < 0).all()                                             # decreasing in γ


def small_pair(n=30, d_a=5, d_b=4, seed=0):
    spec = mvd.venn_spec(2, 3, 2, d_a=d_a, d_b=d_b)
    batch = mvd.sample(mvd.make_task(spec, seed), n, seed=seed + 1)
    return batch["a"].double(), batch["b"].double()


@pytest.mark.parametrize("call,exc,words", [
    (lambda: lemma1_max(-0.5), ValueError, "eps must be finite and >= 0"),
    (lambda: lemma1_max(float("nan")), ValueError, "eps"),
    (lambda: lemma1_max("1"), TypeError, "eps"),
    (lambda: lemma1_argmax(-1.0), ValueError, "eps"),
    (lambda: epsilon_star(2.0, 1.5, 1.0), ValueError, "gamma must lie in [0, 1]"),
    (lambda: epsilon_star(2.0, -0.1, 1.0), ValueError, "gamma"),
    (lambda: epsilon_star(2.0, 0.5, -1.0), ValueError, "epsilon must be finite and >= 0"),
    (lambda: epsilon_star(0.9, 0.5, 1.0), ValueError, "lam must be finite and >= 1"),
    (lambda: theorem1_bound(0, 2.0, 0.5, 1.0), ValueError, "n must be positive"),
    (lambda: theorem1_bound(10, 2.0, 2.0, 1.0), ValueError, "gamma"),
    (lambda: lemma1_max_inverse(-1.0), ValueError, "value"),
    (lambda: l_dis([0.0], torch.zeros(1)), TypeError, "b must be a floating-point"),
    (lambda: run_theorem1(d=10, n=5), ValueError, "n = 5 samples must be >= d = 10"),
    (lambda: run_theorem1(n_draws=0), ValueError, "n_draws"),
    (lambda: run_theorem1(steps=1.5), TypeError, "steps"),
    (lambda: run_theorem1(step=2.0), ValueError, "step must be < 2"),
    (lambda: run_theorem1(device="nonsense"), ValueError, "device"),
    (lambda: run_perturbation([-1e-3]), ValueError, "noise"),
    (lambda: run_lemma2(n_draws=0), ValueError, "n_draws"),
    (lambda: run_perturbation([0.1], steps=0), ValueError, "steps"),
    (lambda: eq4_epsilon(-1.0, 0.5), ValueError, "gap must be finite and >= 0"),
    (lambda: eq4_epsilon(1.0, 1.5), ValueError, "gamma"),
])
def test_bad_input_fails_with_a_clear_error(call, exc, words):
    with pytest.raises(exc, match=words.replace("[", r"\[").replace("]", r"\]")):
        call()


def test_singular_gram_matrices_are_refused_by_name():
    xa, xb = small_pair()
    theta_t = torch.ones(5, dtype=torch.float64) / math.sqrt(5)
    with pytest.raises(ValueError, match="xa: Z Zᵀ = xaᵀxa is 5x5 but has rank <= n = 3"):
        theorem_lambda(xa[:3], xb[:3])
    dup = torch.cat([xb, xb[:, :1] * 2], 1)                                # a repeated column: xbᵀxb is singular
    with pytest.raises(ValueError, match="xb: Z Zᵀ = xbᵀxb is singular"):
        theta_star(theta_t, xa, dup)
    with pytest.raises(ValueError, match="xb"):
        lemma2_lhs(xa, dup)
    with pytest.raises(ValueError, match="xb"):
        fit_student(theta_t, xa, dup)
    with pytest.raises(ValueError, match="same samples"):
        gram_gap(xa, xb[:10])


def test_theta_star_is_least_squares_and_lemma2_holds():
    xa, xb = small_pair()
    theta_t = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    theta_t /= theta_t.norm()
    ls = torch.linalg.lstsq(xb, (xa @ theta_t).unsqueeze(-1)).solution.squeeze(-1)
    assert torch.allclose(theta_star(theta_t, xa, xb), ls, atol=1e-10)
    lam, gap = theorem_lambda(xa, xb), gram_gap(xa, xb)
    assert lemma2_lhs(xa, xb) <= epsilon_star(lam, 0.0, gap)
    # Eq. 21: the logits of θ* lie within ε* of the teacher's, so R_dis(θ*) <= n f(ε*) (Eq. 22)
    resid = (xb @ theta_star(theta_t, xa, xb) - xa @ theta_t).norm()
    assert resid <= epsilon_star(lam, 0.0, gap)
    assert r_dis(theta_star(theta_t, xa, xb), theta_t, xa, xb) <= 30 * lemma1_max(epsilon_star(lam, 0.0, gap))


def test_batched_training_equals_one_problem_at_a_time():
    specs = overlap_specs(4, 3)
    probs = [draw_problem(s, 40, seed=i) for i, s in enumerate(specs)]
    th, xa, xb = (torch.stack(t) for t in zip(*[(p[2], p[0], p[1]) for p in probs]))
    theta_b, curve_b = fit_student(th, xa, xb, steps=200, step=0.5)
    for i, (xa_i, xb_i, th_i) in enumerate(probs):
        theta_i, curve_i = fit_student(th_i, xa_i, xb_i, steps=200, step=0.5)
        assert torch.allclose(theta_b[i], theta_i, atol=1e-12)
        assert torch.allclose(curve_b[:, i], curve_i, atol=1e-10)
    assert (curve_b.diff(dim=0) <= 1e-12).all()                             # a step below 1/L never raises the loss


def test_run_theorem1_rows_and_reproducibility():
    kw = dict(d=3, n=20, n_settings=4, n_draws=2, steps=50, device="cpu")
    a, b = run_theorem1(**kw), run_theorem1(**kw)
    assert len(a) == 4 * 2 * 2 and set(a.scaling) == {"raw", "1/sqrt(n)"}
    assert a.equals(b)
    assert (a.r_trained <= a.r_zero).all() and (a.lam >= 1).all()
    assert (a[a.gamma == 1].bound == 0).all()


GOOD = dict(n=200, d=10, n_settings=6, n_draws=5, steps=1000, step=0.2, n_lemma2=200, seed=0, device="cpu", out_dir="runs/theory")


@pytest.mark.parametrize("bad,exc,words", [
    (dict(n=5), ValueError, "n = 5 samples must be >= d = 10"),
    (dict(d=0), ValueError, "d must be positive"),
    (dict(n_settings=1), ValueError, "n_settings must be >= 2"),
    (dict(n_draws=2.0), TypeError, "n_draws must be an int"),
    (dict(steps=-1), ValueError, "steps"),
    (dict(step=2.0), ValueError, "step must be < 2"),
    (dict(step=float("nan")), ValueError, "step must be positive"),
    (dict(n_lemma2=0), ValueError, "n_lemma2"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(device="nonsense"), ValueError, "device"),
    (dict(out_dir=None), TypeError, "out_dir must be a path"),
])
def test_notebook_parameters_are_checked_by_name(bad, exc, words):
    check_theory_params(**GOOD)
    with pytest.raises(exc, match=words):
        check_theory_params(**{**GOOD, **bad})


def test_eq4_epsilon_known_answers():
    assert eq4_epsilon(3.0, 0.25).item() == 4.0
    assert eq4_epsilon([0.0, 2.0], [1.0, 1.0]).tolist() == [0.0, math.inf]      # γ = 1: any ε for a zero gap, none otherwise
    gaps = torch.tensor([1.0, 5.0], dtype=torch.float64)
    assert torch.allclose(eq4_epsilon(gaps, 0.0), gaps)                          # γ = 0: ε is the gap itself
