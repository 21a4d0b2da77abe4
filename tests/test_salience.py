"""Algorithm 1 and teacher surgery: bad input, loaders, reproducibility."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mfh_nb.salience import Nullified, channel_means, modality_general_teacher, salience, surgery_channels
from mfh_nb.train import DictDataset


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
