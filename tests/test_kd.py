"""Golden values and bad input for mfh_nb.kd, on the installed package.

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
    (dict(rho=True), ValueError, "rho"),
    (dict(rho="0.5"), ValueError, "rho"),
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
