"""Property-based tests of mfh_nb.salience (hypothesis): generated bad inputs raise ValueError/TypeError naming the
parameter; generated good inputs give finite saliences in [0, 1], the same on the fast path and in the literal loop;
generated surgeries replace exactly the chosen channels."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

from mfh_nb.salience import (Nullified, channel_means, l1_distance, mse_distance, salience, sigmoid_mse_distance,
                             softmax_mse_distance, surgery_channels, surgery_teacher)

FAST = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
DISTANCES = [softmax_mse_distance, mse_distance, l1_distance, sigmoid_mse_distance]


def mlp(d_in, hidden, k, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, k))


def data(n, d_a, d_b, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_a, generator=g), torch.randn(n, d_b, generator=g)


F1, F2 = mlp(6, 5, 3, 0), nn.Linear(4, 3)
XA, XB = data(20, 6, 4, 1)

# one bad value per parameter: (parameter, value, the words the message must contain)
BAD_ARGS = st.one_of(
    st.tuples(st.just("M"), st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3))),
    st.tuples(st.just("chunk_size"), st.one_of(st.integers(max_value=0), st.floats(), st.none())),
    st.tuples(st.just("batch_size"), st.one_of(st.integers(max_value=0), st.floats(), st.booleans())),
    st.tuples(st.just("seed"), st.one_of(st.integers(max_value=-1), st.floats(), st.booleans(), st.none())),
    st.tuples(st.just("permute"), st.text(max_size=3).filter(lambda s: s not in ("a", "b"))),
    st.tuples(st.just("method"), st.text(max_size=6).filter(lambda s: s not in ("fast", "literal"))),
    st.tuples(st.just("normalize"), st.text(max_size=6).filter(lambda s: s not in ("max", "minmax"))),
    st.tuples(st.just("keys"), st.one_of(st.lists(st.text(max_size=2), max_size=4).filter(lambda k: len(set(k)) != 2 or len(k) != 2),
                                         st.integers(), st.tuples(st.integers(), st.integers()))),
    st.tuples(st.just("channel_dim"), st.one_of(st.integers().filter(lambda d: d % 2 == 0 or abs(d) > 1), st.floats(), st.booleans())),
    st.tuples(st.just("layer"), st.text(max_size=4).filter(lambda s: s not in ("", "0", "1", "2", "input"))),
    st.tuples(st.just("dist"), st.one_of(st.integers(), st.text(max_size=3))),
    st.tuples(st.just("device"), st.text(min_size=1, max_size=6).filter(lambda s: s not in ("cpu", "auto"))),
)


@FAST
@given(BAD_ARGS)
def test_bad_arguments_raise_naming_the_parameter(bad):
    name, value = bad
    with pytest.raises((ValueError, TypeError)) as e:
        salience(F1, F2, XA, XB, device="cpu", **{name: value})
    assert name in str(e.value) or (name == "device" and "device" in str(e.value)), (name, value, str(e.value))


@FAST
@given(n_a=st.integers(0, 6), n_b=st.integers(0, 6), k2=st.integers(1, 5), nan_at=st.none() | st.integers(0, 5))
def test_bad_data_raise(n_a, n_b, k2, nan_at):
    xa, xb = XA[:n_a].clone(), XB[:n_b].clone()
    if nan_at is not None and nan_at < n_a: xa[nan_at, 0] = float("nan")
    f2 = nn.Linear(4, k2)
    good = n_a == n_b >= 2 and k2 == 3 and (nan_at is None or nan_at >= n_a)
    if good:
        assert torch.isfinite(salience(F1, f2, xa, xb, layer="1", M=2, device="cpu")).all()
    else:
        with pytest.raises(ValueError, match="data_a|samples|shapes per sample|not finite"):
            salience(F1, f2, xa, xb, layer="1", M=2, device="cpu")


@FAST
@given(n=st.integers(2, 30), d_a=st.integers(1, 6), hidden=st.integers(1, 6), k=st.integers(2, 4), M=st.integers(1, 4),
       layer=st.sampled_from([None, "0", "1"]), dist=st.sampled_from(DISTANCES), chunk=st.integers(1, 40),
       batch=st.integers(1, 40), seed=st.integers(0, 2**32), normalize=st.sampled_from(["max", "minmax"]))
def test_good_inputs_give_finite_normalised_salience_equal_to_the_literal_loop(n, d_a, hidden, k, M, layer, dist, chunk, batch, seed,
                                                                                normalize):
    f1, f2 = mlp(d_a, hidden, k, seed % 1000), nn.Linear(3, k)
    xa, xb = data(n, d_a, 3, seed % 1000 + 1)
    kw = dict(layer=layer, M=M, dist=dist, seed=seed, normalize=normalize, device="cpu")
    fast = salience(f1, f2, xa, xb, chunk_size=chunk, batch_size=batch, **kw)
    assert fast.shape == ((hidden,) if layer else (d_a,)) and torch.isfinite(fast).all()
    assert fast.min() >= 0 and fast.max() <= 1 + 1e-6
    assert torch.allclose(fast, salience(f1, f2, xa, xb, method="literal", **kw), atol=1e-4)


class Conv(nn.Module):
    def __init__(self, c): super().__init__(); self.conv, self.head = nn.Conv2d(2, c, 3, padding=1), nn.Linear(c, 3)
    def forward(self, x): return self.head(F.relu(self.conv(x)).mean((2, 3)))


@FAST
@given(c=st.integers(1, 5), fill=st.sampled_from(["mean", "batch", "zeros"]), channel_dim=st.sampled_from([1, 2, 3, -1]),
       data=st.data())
def test_nullified_replaces_exactly_the_chosen_channels(c, fill, channel_dim, data):
    torch.manual_seed(c)
    net, x = Conv(c), torch.randn(7, 2, 4, 5)
    width = (7, c, 4, 5)[channel_dim]
    chosen = data.draw(st.lists(st.integers(0, width - 1), unique=True, max_size=width))
    fill_arg = torch.zeros(c, 4, 5) if fill == "zeros" else fill
    null = Nullified(net, chosen, "conv", fill_arg, data=x, channel_dim=channel_dim)
    h = net.conv(x)
    out = null.replace(h)
    d = channel_dim % 4
    others = [i for i in range(width) if i not in chosen]
    assert torch.equal(out.index_select(d, torch.tensor(others, dtype=torch.long)), h.index_select(d, torch.tensor(others, dtype=torch.long)))
    if chosen:
        got = out.index_select(d, torch.tensor(chosen))
        want = {"mean": channel_means(net, x, "conv"), "zeros": torch.zeros(c, 4, 5)}.get(fill, h.mean(0))
        assert torch.allclose(got, want.index_select(d - 1, torch.tensor(chosen)).expand_as(got), atol=1e-6)
    assert torch.isfinite(null(x)).all()


@FAST
@given(channels=st.one_of(st.lists(st.integers(-20, 20), min_size=1, max_size=6).filter(lambda l: min(l) < 0 or max(l) >= 4 or len(set(l)) < len(l)),
                          st.lists(st.floats(0, 3), min_size=1, max_size=3), st.lists(st.booleans(), min_size=1, max_size=4),
                          st.text(min_size=1, max_size=3)),
       fill=st.sampled_from(["mean", "batch", "zeros"]))
def test_bad_channels_are_refused_for_every_fill(channels, fill):
    net, x = Conv(4), torch.randn(5, 2, 3, 3)
    with pytest.raises((ValueError, TypeError), match="channels"):
        Nullified(net, channels, "conv", torch.zeros(4, 3, 3) if fill == "zeros" else fill, data=x)


@FAST
@given(length=st.integers(1, 9).filter(lambda n: n != 4), fill=st.sampled_from(["mean", "batch", "zeros"]),
       ratio=st.floats(0, 0.99), kind=st.sampled_from(["general", "specific", "random"]))
def test_wrong_length_salience_is_refused_for_every_fill(length, fill, ratio, kind):
    net, x = Conv(4), torch.randn(5, 2, 3, 3)
    with pytest.raises(ValueError, match=f"salience has {length} values but layer 'conv' has 4 channels"):
        surgery_teacher(net, torch.rand(length), ratio, kind, layer="conv", fill=torch.zeros(4, 3, 3) if fill == "zeros" else fill, data=x)


@FAST
@given(bad=st.one_of(st.tuples(st.just("ratio"), st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1), st.text(max_size=2))),
                     st.tuples(st.just("kind"), st.text(max_size=8).filter(lambda s: s not in ("general", "specific", "random"))),
                     st.tuples(st.just("seed"), st.one_of(st.integers(max_value=-1), st.floats(), st.booleans())),
                     st.tuples(st.just("salience"), st.one_of(st.just(torch.zeros(0)), st.just(torch.tensor([1.0, float("nan")])),
                                                              st.just(torch.ones(2, 2)), st.just(torch.arange(3)), st.lists(st.floats(), max_size=3)))))
def test_bad_surgery_arguments_raise_naming_the_parameter(bad):
    name, value = bad
    kw = {"salience": torch.rand(4), "ratio": 0.5, "kind": "general", "seed": 0, name: value}
    with pytest.raises((ValueError, TypeError), match=name):
        surgery_channels(**kw)
