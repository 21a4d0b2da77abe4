"""Algorithm 1 and teacher surgery: bad input, loaders, reproducibility, channel dimensions, sample chunks, distances,
the caller's networks left alone, and the silent-wrong results of the surgery wrappers (issue 10)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mfh_nb.salience import (Nullified, channel_means, modality_general_teacher, modality_specific_teacher, salience,
                             surgery_channels)
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
    (dict(batch_size=1.5), TypeError, "batch_size must be an int"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(permute="c"), ValueError, "permute must be"),
    (dict(method="quick"), ValueError, "method must be"),
    (dict(keys=("a",)), ValueError, "keys must be 2 distinct"),
    (dict(keys=("a", "a")), ValueError, "keys must be 2 distinct"),
    (dict(dist="mse"), TypeError, "dist must be callable"),
    (dict(dist=lambda p, q: (p - q).pow(2).mean()), ValueError, "dist must return one distance per sample"),
    (dict(channel_dim=0), ValueError, "other than the sample dimension 0"),
    (dict(channel_dim=2), ValueError, "channel_dim 2 is not a dimension"),
    (dict(device="nonsense"), ValueError, "device 'nonsense'"),
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
    for n in (0, 1):
        with pytest.raises(ValueError, match="at least 2 samples"):
            salience(*pair, xa[:n], xb[:n])
    with pytest.raises(ValueError, match="data_a is empty"):
        salience(*pair, DataLoader(DictDataset(a=xa[:0], b=xb[:0]), batch_size=4))
    with pytest.raises(ValueError, match="different shapes per sample"):
        salience(pair[0], nn.Linear(4, 5), xa, xb)
    bad = xa.clone(); bad[17, 2] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        salience(*pair, bad, xb, layer="1")


class Tokens(nn.Module):
    "(N, L, D) tokens -> embed -> ReLU -> mean over tokens -> classes."
    def __init__(self, d=5, k=3): super().__init__(); self.embed, self.head = nn.Linear(d, 6), nn.Linear(6, k)
    def forward(self, x): return self.head(F.relu(self.embed(x)).mean(1))


class SkipTokens(Tokens):
    "The same with a skip connection over `embed`: the fx cut is refused and the fallback runs."
    def forward(self, x): return self.head(F.relu(self.embed(x)).mean(1) + x[..., :6].mean(1))


@pytest.mark.parametrize("net", [Tokens, lambda: SkipTokens(d=7)])
@pytest.mark.parametrize("layer", [None, "embed"])
def test_channel_dim_fast_equals_literal(net, layer):
    torch.manual_seed(2)
    f1, f2 = net(), nn.Linear(4, 3)
    xa, xb = torch.randn(30, 4, f1.embed.in_features), torch.randn(30, 4)
    for channel_dim in (-1, 1):                           # the features, or the 4 token positions
        fast = salience(f1, f2, xa, xb, layer=layer, M=3, chunk_size=4, batch_size=7, channel_dim=channel_dim, device="cpu")
        literal = salience(f1, f2, xa, xb, layer=layer, M=3, channel_dim=channel_dim, method="literal", device="cpu")
        assert fast.shape == literal.shape and torch.allclose(fast, literal, atol=1e-5)


def test_sample_chunks_give_the_salience_of_one_chunk(pair, data):
    xa, xb, _ = data
    for layer in (None, "1"):
        whole = salience(*pair, xa, xb, layer=layer, M=4, batch_size=40, normalize=None, device="cpu")
        for batch_size in (1, 3, 16):
            chunked = salience(*pair, xa, xb, layer=layer, M=4, batch_size=batch_size, chunk_size=5, normalize=None, device="cpu")
            assert torch.allclose(chunked, whole, rtol=1e-5, atol=1e-7)


def test_distances_per_sample_and_the_named_options(pair, data):
    from mfh_nb.salience import l1_distance, mse_distance, sigmoid_mse_distance, softmax_mse_distance
    p, q = torch.randn(2, 5, 3, 4, 4), torch.randn(5, 3, 4, 4)               # dense outputs (n, K, H, W), two copies
    assert torch.allclose(softmax_mse_distance(p, q), (p.softmax(2) - q.softmax(1)).pow(2).mean((2, 3, 4)))
    assert torch.allclose(sigmoid_mse_distance(p, q), (p.sigmoid() - q.sigmoid()).pow(2).mean((2, 3, 4)))
    assert torch.allclose(l1_distance(p, q), (p - q).abs().mean((2, 3, 4)))
    assert torch.allclose(mse_distance(p, q), (p - q).pow(2).mean((2, 3, 4)))
    xa, xb, _ = data
    assert torch.equal(salience(*pair, xa, xb, M=3, device="cpu"), salience(*pair, xa, xb, M=3, dist=softmax_mse_distance, device="cpu"))
    for dist in (l1_distance, mse_distance, sigmoid_mse_distance):
        fast = salience(*pair, xa, xb, layer="1", M=3, dist=dist, device="cpu")
        assert torch.allclose(fast, salience(*pair, xa, xb, layer="1", M=3, dist=dist, method="literal", device="cpu"), atol=1e-5)
        assert not torch.allclose(fast, salience(*pair, xa, xb, layer="1", M=3, device="cpu"), atol=1e-3)


def test_on_device_never_moves_the_callers_model(pair):
    from mfh_nb.salience import on_device
    f1, _ = pair
    assert on_device(f1, torch.device("cpu")) is f1
    moved = on_device(f1, torch.device("meta"))
    assert moved is not f1 and next(moved.parameters()).is_meta and next(f1.parameters()).device.type == "cpu"


def test_surgery_from_a_loader_and_bad_ratio(pair, data):
    f1, _ = pair
    xa, xb, y = data
    loader = DataLoader(DictDataset(a=xa, b=xb, y=y), batch_size=16)
    means = channel_means(f1, loader, layer="1", device="cpu")
    assert torch.allclose(means, torch.relu(f1[0](xa)).mean(0), atol=1e-6)
    sal = torch.linspace(0, 1, 8)
    teacher = modality_general_teacher(f1, sal, 0.25, layer="1", data=loader)
    assert teacher.channels.tolist() == [0, 1] and torch.allclose(teacher.fill, means)
    for ratio in (-0.1, 1.0, 2):
        with pytest.raises(ValueError, match="ratio must be in"):
            surgery_channels(sal, ratio, "general")
    with pytest.raises(ValueError, match="fill must be 'mean', 'batch' or a tensor"):
        Nullified(f1, [0], "1", fill="zero", data=xa)
    with pytest.raises(ValueError, match="needs `data`"):
        Nullified(f1, [0], "1")
    with pytest.raises(ValueError, match="expected"):
        Nullified(f1, [0], "1", data=xa)(torch.randn(3, 2, 6))
    with pytest.raises(ValueError, match="salience has NaN"):
        surgery_channels(torch.tensor([0.1, float("nan")]), 0.5, "general")


def test_nullified_tokens_along_the_last_dimension():
    torch.manual_seed(3)
    f1, xa = Tokens(), torch.randn(20, 4, 5)
    null = Nullified(f1, [0, 2], "embed", data=xa, channel_dim=-1)
    seen = {}
    f1.embed.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o))
    null(xa)                                             # the hook above runs before Nullified's, so recompute
    h = null.replace(seen["h"])
    assert torch.allclose(h[..., [0, 2]], null.fill[..., [0, 2]].expand(20, -1, -1))
    assert torch.equal(h[..., [1, 3, 4, 5]], seen["h"][..., [1, 3, 4, 5]])


# --- silent wrong results of the old surgery wrappers: each of these passed without an error at commit 52e4e12 ------

def test_negative_channel_is_refused_not_the_last_one_nullified(pair, data):
    f1, _ = pair
    with pytest.raises(ValueError, match=r"channels must be in \[0, 8\)"):
        Nullified(f1, [-1], "1", torch.zeros(8))
    with pytest.raises(ValueError, match=r"channels must be in \[0, 8\)"):
        Nullified(f1, [-1], "1", "batch", data=data[0])


@pytest.mark.parametrize("fill", ["batch", "default"])
def test_wrong_length_salience_is_refused_for_every_fill(pair, data, fill):
    f1, _ = pair
    kw = {} if fill == "default" else {"fill": fill}
    with pytest.raises(ValueError, match="salience has 5 values but layer '1' has 8 channels"):
        modality_specific_teacher(f1, torch.linspace(0, 1, 5), 0.5, layer="1", data=data[0], **kw)


def test_a_linear_layer_above_the_cut_takes_the_fast_path_and_agrees_with_the_literal_loop():
    # regression: the rank-one path used to recompute the cut node from inputs below the cut, fail, and fall back
    from mfh_nb.salience import checked_cut
    torch.manual_seed(0)
    f1, f2 = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), nn.Linear(4, 3)
    xa, xb = torch.randn(40, 6), torch.randn(40, 4)
    assert checked_cut(f1, "1", xa[:8]) is not None
    fast = salience(f1, f2, xa, xb, layer="1", M=4, device="cpu")
    assert torch.allclose(fast, salience(f1, f2, xa, xb, layer="1", M=4, device="cpu", method="literal"), atol=1e-5)
