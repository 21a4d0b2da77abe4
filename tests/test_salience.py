"""Algorithm 1 and teacher surgery: the notebook under papermill, bad input, loaders, reproducibility."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mfh_nb.salience import (Nullified, channel_means, modality_general_teacher, run_table2, salience,
                             surgery_channels)
from mfh_nb.train import DictDataset

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "05_salience.ipynb"), str(tmp_path / "executed.ipynb"),
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
    for fig in ("table2.png", "salience_example.png"):
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"


@pytest.fixture()
def pair():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), nn.Linear(4, 3)


@pytest.fixture()
def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(40, 6, generator=g), torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)


def test_loader_and_tensors_give_the_same_salience(pair, data):
    xa, xb, y = data
    loader = DataLoader(DictDataset(x=xa, z=xb, y=y), batch_size=7)
    from_tensors = salience(*pair, xa, xb, layer="1", M=4, device="cpu")
    from_loader = salience(*pair, loader, keys=("x", "z"), layer="1", M=4, device="cpu")
    assert torch.allclose(from_tensors, from_loader, atol=1e-6)
    swapped = salience(*pair, loader, keys=("x", "z"), permute="b", M=4, device="cpu")
    assert swapped.shape == (4,) and torch.allclose(swapped, salience(*pair, xa, xb, permute="b", M=4, device="cpu"), atol=1e-6)


def test_salience_restores_training_mode_and_is_seeded(pair, data):
    f1, f2 = pair
    f1.train()
    a = salience(f1, f2, *data[:2], M=3, seed=5, device="cpu")
    assert f1.training and f1[0].training
    assert torch.equal(a, salience(f1, f2, *data[:2], M=3, seed=5, device="cpu"))
    assert not torch.equal(a, salience(f1, f2, *data[:2], M=3, seed=6, device="cpu"))


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(layer="2.weight"), ValueError, "layer '2.weight' is not a submodule"),
    (dict(M=0), ValueError, "M must be positive"),
    (dict(chunk_size=-1), ValueError, "chunk_size must be positive"),
    (dict(permute="c"), ValueError, "permute must be"),
    (dict(method="quick"), ValueError, "method must be"),
])
def test_salience_bad_arguments(pair, data, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        salience(*pair, data[0], data[1], **kwargs)


def test_salience_bad_data(pair, data):
    xa, xb, y = data
    with pytest.raises(ValueError, match="data_a has 40 samples but data_b has 39"):
        salience(*pair, xa, xb[:39])
    with pytest.raises(TypeError, match="must be tensors"):
        salience(*pair, xa.numpy(), xb)
    with pytest.raises(ValueError, match="takes tensors, not a DataLoader"):
        salience(*pair, DataLoader(DictDataset(a=xa, b=xb)), method="literal")


def test_surgery_from_a_loader_and_bad_ratio(pair, data):
    f1, _ = pair
    xa, xb, y = data
    loader = DataLoader(DictDataset(a=xa, b=xb, y=y), batch_size=16)
    means = channel_means(f1, loader, layer="1", device="cpu")
    assert torch.allclose(means, torch.relu(f1[0](xa)).mean(0), atol=1e-6)
    sal = torch.linspace(0, 1, 8)
    teacher = modality_general_teacher(f1, sal, 0.25, layer="1", data=loader)
    assert teacher.channels.tolist() == [0, 1]
    for ratio in (-0.1, 1.0, 2):
        with pytest.raises(ValueError, match="ratio must be in"):
            surgery_channels(sal, ratio, "general")
    with pytest.raises(ValueError, match="fill must be a tensor or 'batch'"):
        Nullified(f1, [0], "1", fill="zero")
    with pytest.raises(ValueError, match="channel 9 does not exist"):
        Nullified(f1, [9], "1")(xa)


@pytest.mark.parametrize("kwargs,words", [(dict(M=0), "M must be positive"), (dict(ratio=1.0), "ratio must be None"),
                                          (dict(n_runs=0), "n_runs"), (dict(joint_momentum=1.0), "joint_momentum")])
def test_table2_bad_parameters(kwargs, words):
    with pytest.raises(ValueError, match=words):
        run_table2(**kwargs)


def test_table2_with_a_ratio_keeps_that_many_channels():
    df = run_table2(n_runs=1, M=2, ratio=0.6, epochs=20, joint_epochs=20, device="cpu")
    assert set(df[df["mode"] != "gt"].kept) == {20}
    assert set(df[df["mode"] == "gt"].kept) == {5, 10, 15}
