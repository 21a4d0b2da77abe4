"""Golden values, numerics over the temperature range and bad input for mfh_nb.kd, on the installed package.

The golden numbers were computed once with an independent float64 NumPy
implementation of Eq. 1 (log-sum-exp softmax, explicit KL sums)."""
import pytest
import torch

from mfh_nb.kd import dense_kd_loss, kd_loss, multilabel_kd_loss

S = torch.tensor([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0], [0.2, -0.4, 0.1]], dtype=torch.float64)
T_ = torch.tensor([[0.5, 2.5, -1.0], [0.0, 0.3, 2.0], [1.5, -0.5, 0.0]], dtype=torch.float64)
Y = torch.tensor([1, 2, 0])

KD_GOLDEN = [  # (rho, T, loss)
    (1.0, 1.0, 0.4759430047334153),
    (0.5, 1.0, 0.3280308157837477),
    (0.0, 1.0, 0.1801186268340802),
    (0.3, 2.0, 0.3374623255512418),
    (0.0, 4.0, 0.30532826331595936),
]


@pytest.mark.parametrize("rho,T,golden", KD_GOLDEN)
def test_kd_loss_golden(rho, T, golden):
    assert kd_loss(S, T_, Y, rho=rho, T=T).item() == pytest.approx(golden, rel=1e-12)


def test_kd_loss_float32_close_to_golden():
    assert kd_loss(S.float(), T_.float(), Y, rho=0.3, T=2.0).item() == pytest.approx(0.3374623255512418, rel=1e-6)


ML_S = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.7, 0.0]], dtype=torch.float64)
ML_T = torch.tensor([[1.0, -0.2], [-0.5, 1.5], [0.0, 0.0]], dtype=torch.float64)
ML_Y = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)


@pytest.mark.parametrize("rho,T,golden", [(1.0, 1.0, 0.8383253121583468), (0.5, 1.0, 0.5903994174490537),
                                          (0.0, 2.0, 0.37237087754669057)])
def test_multilabel_kd_loss_golden(rho, T, golden):
    assert multilabel_kd_loss(ML_S, ML_T, ML_Y, rho=rho, T=T).item() == pytest.approx(golden, rel=1e-12)


def test_dense_kd_loss_golden():
    # the three rows of S/T_ as three pixels of one 1x3 image; the middle pixel is unlabelled
    s, t = S.T.reshape(1, 3, 1, 3), T_.T.reshape(1, 3, 1, 3)
    y = torch.tensor([[[1, 255, 0]]])
    assert dense_kd_loss(s, t, y, rho=0.5).item() == pytest.approx(0.4317497678657214, rel=1e-12)
    assert dense_kd_loss(s, t, y, rho=0.5, distill_ignored=True).item() == pytest.approx(0.43054559102774426, rel=1e-12)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(rho=2.0), ValueError, "rho"),
    (dict(rho=True), TypeError, "rho"),
    (dict(rho="0.5"), TypeError, "rho"),
    (dict(T=0.0), ValueError, "T must"),
    (dict(T=float("inf")), ValueError, "T must"),
])
def test_kd_loss_bad_weights(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        kd_loss(S, T_, Y, **kwargs)


def test_kd_loss_bad_tensors():
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        kd_loss(S, T_, [1, 2, 0])
    with pytest.raises(TypeError, match="teacher_logits must be a floating"):
        kd_loss(S, T_.long(), Y)
    with pytest.raises(TypeError, match="target must hold integer"):
        kd_loss(S, T_, Y.bool())
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(S, T_[:2], Y)
    with pytest.raises(ValueError, match="dense_kd_loss"):
        kd_loss(S[None], T_[None], Y[None])


def test_teacher_receives_no_gradient():
    s, t = S.clone().requires_grad_(), T_.clone().requires_grad_()
    for loss in (kd_loss(s, t, Y, rho=0.2), multilabel_kd_loss(s[:, :2], t[:, :2], ML_Y, rho=0.2)):
        loss.backward()
    assert t.grad is None and s.grad is not None


# --- numerics: float32 logits, any temperature in [1e-3, 1e5], against 50-digit arithmetic -------------------------

import mpmath  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from mfh_nb.kd import bernoulli_kl, kl_per_sample  # noqa: E402

mpmath.mp.dps = 50
logit_arrays = lambda shape: arrays("float32", shape, elements=st.floats(-20, 20, width=32))
temperatures = st.floats(-3, 5).map(lambda e: 10.0 ** e)


def kl_reference(s, t, T: float) -> list:
    "KL(softmax(t/T) || softmax(s/T)) per row, from the float32 values, in 50-digit arithmetic."
    out = []
    for srow, trow in zip(s.tolist(), t.tolist()):
        zs, zt = [mpmath.mpf(v) / T for v in srow], [mpmath.mpf(v) / T for v in trow]
        ls, lt = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zs)), mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zt))
        out.append(mpmath.fsum(mpmath.exp(b - lt) * ((b - lt) - (a - ls)) for a, b in zip(zs, zt)))
    return out


def bernoulli_reference(s, t, T: float) -> list:
    "KL(Bern(σ(t/T)) || Bern(σ(s/T))) per element, from the float32 values, in 50-digit arithmetic (log-sigmoids)."
    log_sig = lambda z: -mpmath.log1p(mpmath.exp(-z))
    out = []
    for a, b in zip(s.flatten().tolist(), t.flatten().tolist()):
        a, b = mpmath.mpf(a) / T, mpmath.mpf(b) / T
        out.append(mpmath.exp(log_sig(b)) * (log_sig(b) - log_sig(a)) + mpmath.exp(log_sig(-b)) * (log_sig(-b) - log_sig(-a)))
    return out


def assert_close(ours, ref, T: float, what: str):
    "Each KL >= 0, and T²·KL (what enters Eq. 1) within 1e-4 relative of the reference (or 1e-12 absolute, for KL ~ 0)."
    for o, r in zip(ours, ref):
        assert o >= 0, f"{what}: negative KL {o}"
        assert abs(T * T * (o - float(r))) <= 1e-4 * T * T * float(r) + 1e-12, f"{what}: {o} vs {float(r)}"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(s=logit_arrays((3, 4)), t=logit_arrays((3, 4)), T=temperatures)
def test_kl_matches_50_digit_reference_over_the_temperature_range(s, t, T):
    ours = kl_per_sample(torch.from_numpy(s), torch.from_numpy(t), T).tolist()
    assert_close(ours, kl_reference(s, t, T), T, f"softmax KL at T={T:g}")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(s=logit_arrays((2, 3)), t=logit_arrays((2, 3)), T=temperatures)
def test_bernoulli_kl_matches_50_digit_reference_over_the_temperature_range(s, t, T):
    ours = bernoulli_kl(torch.from_numpy(s), torch.from_numpy(t), T).flatten().tolist()
    assert_close(ours, bernoulli_reference(s, t, T), T, f"Bernoulli KL at T={T:g}")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(t=logit_arrays((4, 5)), noise=st.floats(1e-7, 1e-3), T=temperatures)
def test_near_equal_logits_never_give_a_negative_kd_term(t, noise, T):
    t = torch.from_numpy(t)
    s = t + noise * torch.linspace(-1, 1, 5)
    y = torch.zeros(4, dtype=torch.long)
    assert kd_loss(s, t, y, rho=0.0, T=T).item() >= 0
    assert multilabel_kd_loss(s, t, torch.zeros_like(t), rho=0.0, T=T).item() >= 0


def test_kd_loss_at_large_temperature_matches_its_limit():
    # As T grows, T²·KL(softmax(t/T) || softmax(s/T)) -> Var_u(s - t)/2 (u uniform over classes): a known answer.
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(64, 6, generator=g), torch.randn(64, 6, generator=g)
    limit = ((s - t) - (s - t).mean(1, keepdim=True)).pow(2).mean(1).mean().item() / 2
    ours = kd_loss(s, t, torch.zeros(64, dtype=torch.long), rho=0.0, T=1e5).item()
    assert ours == pytest.approx(limit, rel=1e-4)


# --- bad input, generated: every call raises TypeError/ValueError naming the argument -----------------------------

bad_rho = st.one_of(st.floats(allow_nan=True).filter(lambda v: not 0 <= v <= 1), st.just(True), st.text(max_size=3))
bad_T = st.one_of(st.floats(max_value=0), st.floats(min_value=1e6, exclude_min=True), st.just(float("nan")), st.none())


@settings(max_examples=50, deadline=None, derandomize=True)
@given(rho=bad_rho)
def test_any_bad_rho_is_refused_by_name(rho):
    for loss in (kd_loss, multilabel_kd_loss):
        y = Y if loss is kd_loss else ML_Y
        with pytest.raises((TypeError, ValueError), match="rho"):
            loss(S[:, :2] if loss is multilabel_kd_loss else S, T_[:, :2] if loss is multilabel_kd_loss else T_, y, rho=rho)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(T=bad_T)
def test_any_bad_temperature_is_refused_by_name(T):
    with pytest.raises((TypeError, ValueError), match="T must"):
        kd_loss(S, T_, Y, T=T)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(bad=st.integers(-2**63, 2**63 - 1).filter(lambda v: not 0 <= v < 3 and v != 255))
def test_any_label_outside_the_classes_is_refused(bad):
    y = Y.clone(); y[1] = bad
    with pytest.raises(ValueError, match="target holds class indices outside"):
        kd_loss(S, T_, y)
    with pytest.raises(ValueError, match="target holds class indices outside"):
        dense_kd_loss(S.T.reshape(1, 3, 1, 3), T_.T.reshape(1, 3, 1, 3), y.reshape(1, 1, 3))


@settings(max_examples=50, deadline=None, derandomize=True)
@given(bad=st.floats(allow_nan=True).filter(lambda v: not 0 <= v <= 1))
def test_any_multilabel_target_outside_unit_interval_is_refused(bad):
    y = ML_Y.clone(); y[0, 1] = bad
    with pytest.raises(ValueError, match=r"target must hold labels or probabilities in \[0, 1\]"):
        multilabel_kd_loss(ML_S, ML_T, y)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(value=st.sampled_from([float("nan"), float("inf"), -float("inf")]), who=st.sampled_from(["student", "teacher"]))
def test_non_finite_logits_are_refused_by_name(value, who):
    s, t = S.clone(), T_.clone()
    (s if who == "student" else t)[0, 0] = value
    with pytest.raises(ValueError, match=f"{who}_logits holds NaN or infinite"):
        kd_loss(s, t, Y)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(s=logit_arrays((5, 3)), t=logit_arrays((5, 3)), rho=st.floats(0, 1), T=temperatures,
       y=arrays("int64", 5, elements=st.integers(0, 2)))
def test_good_input_gives_a_finite_nonnegative_loss(s, t, rho, T, y):
    s, t, y = torch.from_numpy(s), torch.from_numpy(t), torch.from_numpy(y)
    for value in (kd_loss(s, t, y, rho, T), multilabel_kd_loss(s, t, (t > 0).float(), rho, T),
                  dense_kd_loss(s.T[None, :, :, None], t.T[None, :, :, None], y[None, :, None], rho, T)):
        assert torch.isfinite(value) and value.item() >= 0
