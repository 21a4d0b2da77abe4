"""mfh_nb.mvd: the seed contract across processes, bad input, the installed package."""
import subprocess
import sys

import pytest
import torch

from mfh_nb import mvd


def _digest_in_subprocess() -> str:
    code = ("import torch; from mfh_nb import mvd\n"
            "spec = mvd.with_random_columns(mvd.fig3_specs()[2], seed=3)\n"
            "tr, te = mvd.train_test(mvd.make_task(spec, seed=4), 50, 70, seed=5)\n"
            "print(float(tr['a'].sum()), float(te['b'].sum()), int(tr['y'].sum()), spec.cols_a[:5])")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout


def test_seed_gives_identical_data_in_a_fresh_process():
    spec = mvd.with_random_columns(mvd.fig3_specs()[2], seed=3)
    tr, te = mvd.train_test(mvd.make_task(spec, seed=4), 50, 70, seed=5)
    here = f"{float(tr['a'].sum())} {float(te['b'].sum())} {int(tr['y'].sum())} {spec.cols_a[:5]}\n"
    assert _digest_in_subprocess() == here


def test_installed_package_imports_outside_the_repo():
    out = subprocess.run([sys.executable, "-c", "import mfh_nb.kd, mfh_nb.mvd, mfh_nb; print(mfh_nb.__version__)"],
                         capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip()


@pytest.mark.parametrize("kwargs,words", [
    (dict(d=4, d_a=4, d_b=4, J_a=(0, 4), J_b=(1,)), "J_a has indices"),
    (dict(d=4, d_a=4, d_b=4, J_a=(0,), J_b=(1, 1)), "J_b has repeated"),
    (dict(d=4, d_a=4, d_b=2, J_a=(0,), J_b=(1, 2, 3), cols_b=(0, 1, 2)), "do not fit in d_b"),
    (dict(d=4, d_a=4, d_b=4, J_a=(0,), J_b=(1,), cols_a=(4,)), "cols_a has indices"),
    (dict(d=4, d_a=4, d_b=4, J_a=(), J_b=()), "both empty"),
    (dict(d=4, d_a=0, d_b=4, J_a=(), J_b=(1,)), "d_a must be positive"),
])
def test_bad_spec_names_the_argument(kwargs, words):
    with pytest.raises(ValueError, match=words):
        mvd.MVDSpec(**kwargs)


def test_bad_types():
    with pytest.raises(TypeError, match="d must be an int"):
        mvd.MVDSpec(d=4.0, d_a=4, d_b=4, J_a=(0,), J_b=(1,))
    with pytest.raises(TypeError, match="spec must be an MVDSpec"):
        mvd.make_task({"d": 3})
    with pytest.raises(TypeError, match="g_b must be callable"):
        mvd.make_task(mvd.fig2_specs()[0], g_b="tanh")
    with pytest.raises(ValueError, match=r"delta must be a tensor of shape \(3, 5\)"):
        mvd.make_task(mvd.venn_spec(2, 1, 1, 4, 4, n_unseen=1, n_classes=3), delta=torch.zeros(5))


def test_multiclass_labels_known_answers():
    spec = mvd.venn_spec(2, 1, 1, 4, 4, n_classes=3)                             # d = 4 decisive features
    eye = torch.eye(3, 4)                                                         # δ_k = e_k
    assert mvd.labels_of(torch.tensor([[1.0, 2.0, -1.0, 0.0], [0.0, -1.0, 0.5, 9.0]]), eye).tolist() == [1, 2]
    data = mvd.sample(mvd.make_task(spec, delta=eye), 500, seed=1)
    assert torch.equal(data["y"], data["x_star"][:, :3].argmax(1))                # class k: feature k is the largest of 0..2
    perm = [2, 0, 1]                                                              # relabelling the hyperplanes relabels the classes
    assert torch.equal(mvd.labels_of(data["x_star"], eye[perm]), torch.tensor(perm).argsort()[data["y"]])


def test_one_hyperplane_is_two_classes_of_the_argmax_rule():
    x = torch.randn(1000, 6, generator=torch.Generator().manual_seed(0))
    delta = torch.randn(6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mvd.labels_of(x, delta), mvd.labels_of(x, torch.stack([torch.zeros(6), delta])))
