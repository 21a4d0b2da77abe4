"""Property-based tests of mfh_nb.train (hypothesis): generated bad settings and data raise ValueError/TypeError naming
the parameter before any training; generated good runs give finite results; generated damage to a checkpoint and
generated changes to a run are refused with an error naming the checkpoint file."""
import functools
import math
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn
from torch.utils.data import DataLoader

from mfh_nb.kd import kd_loss, multilabel_kd_loss
from mfh_nb.train import Callback, DictDataset, Distill, Supervised, fit

FAST = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def toy(n=40, d=5, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, (x[:, :k].argmax(1) if k > 1 else (x[:, 0] > 0).long())


X, Y = toy()
TRAIN = DataLoader(DictDataset(a=X + 0.1, b=X, y=Y), batch_size=10, shuffle=True)
VAL = DataLoader(DictDataset(a=X + 0.1, b=X, y=Y), batch_size=10)


class Counter(Callback):
    def __init__(self): self.batches = 0
    def on_batch_end(self, state): self.batches += 1


def net(seed=0, d=5, k=2):
    torch.manual_seed(seed)
    return nn.Linear(d, k)


NOT_NUMBER = st.one_of(st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2))
BAD_SETTINGS = st.one_of(
    st.tuples(st.just("epochs"), st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), NOT_NUMBER)),
    st.tuples(st.just("lr"), st.one_of(st.floats(max_value=0), st.just(math.inf), st.just(math.nan), st.booleans(), NOT_NUMBER)),
    st.tuples(st.just("momentum"), st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1), st.just(math.nan), NOT_NUMBER)),
    st.tuples(st.just("weight_decay"), st.one_of(st.floats(max_value=-1e-9), st.just(math.inf), st.just(math.nan), NOT_NUMBER)),
    st.tuples(st.just("seed"), st.one_of(st.integers(max_value=-1), st.floats(), st.booleans(), NOT_NUMBER)),
    st.tuples(st.just("num_classes"), st.one_of(st.integers(max_value=0), st.integers(min_value=3, max_value=10**6), st.floats(), st.booleans())),
    st.tuples(st.just("metric"), st.text(max_size=8).filter(lambda s: s not in ("accuracy", "map", "f1_micro", "f1_macro", "miou"))),
    st.tuples(st.just("device"), st.text(min_size=1, max_size=6).filter(lambda s: s not in ("cpu", "auto"))),
    st.tuples(st.just("amp"), st.one_of(st.integers(), st.text(max_size=3), st.none())),
    st.tuples(st.just("progress"), st.one_of(st.integers(), st.text(max_size=3), st.none())),
    st.tuples(st.just("checkpoint_dir"), st.one_of(st.integers(), st.floats(), st.just("FILE"))),
    st.tuples(st.just("optimizer"), st.one_of(st.integers(), st.text(max_size=3))),
    st.tuples(st.just("scheduler"), st.one_of(st.integers(), st.text(max_size=3))),
    st.tuples(st.just("callbacks"), st.one_of(st.integers(), st.text(min_size=1, max_size=3), st.lists(st.integers(), min_size=1, max_size=2))),
)


@FAST
@given(BAD_SETTINGS)
def test_bad_settings_raise_naming_the_parameter_before_training(bad):
    name, value = bad
    counter = Counter()
    with tempfile.TemporaryDirectory() as d:
        if value == "FILE": value = Path(d) / "f"; value.write_text("")
        kw = {"epochs": 1, "val_loader": VAL, "num_classes": 2, "device": "cpu", "progress": False, "callbacks": [counter], name: value}
        with pytest.raises((ValueError, TypeError)) as e:
            fit(Supervised(net()), TRAIN, **kw)
    words = {"num_classes": ("num_classes",), "metric": ("metric",), "callbacks": ("callbacks",)}.get(name, (name,))
    assert any(w in str(e.value) for w in words), (name, value, str(e.value))
    assert counter.batches == 0


@FAST
@given(k=st.integers(2, 4), where=st.sampled_from(["train", "val", "test"]), row=st.integers(0, 39),
       fault=st.sampled_from(["high", "negative", "nan", "int32", "float", "missing_label"]))
def test_bad_data_raise_naming_the_loader(k, where, row, fault):
    x, y = toy(k=k)
    x, y = x.clone(), y.clone()
    if fault == "high": y[row] = k + row % 3
    if fault == "negative": y[row] = -1 - row % 3
    if fault == "nan": x[row, row % 5] = math.nan
    if fault == "int32": y = y.int()
    if fault == "float": y = y.float()
    bad = DataLoader(DictDataset(b=x) if fault == "missing_label" else DictDataset(b=x, y=y), batch_size=10)
    good = DataLoader(DictDataset(b=toy(k=k)[0], y=toy(k=k)[1]), batch_size=10)
    loaders = {"train_loader": good, "val_loader": good, "test_loader": good, f"{where}_loader": bad}
    counter = Counter()
    with pytest.raises((ValueError, TypeError)) as e:
        fit(Supervised(net(k=k)), loaders.pop("train_loader"), epochs=1, num_classes=k, device="cpu", progress=False,
            callbacks=[counter], **loaders)
    assert f"{where}_loader" in str(e.value), (where, fault, str(e.value))
    in_first_batch = row < 10 or fault in ("int32", "float", "missing_label")     # later batches are checked as they are read
    assert counter.batches == 0 or not in_first_batch


@FAST
@given(d=st.integers(1, 6), k=st.integers(2, 4), n=st.integers(4, 40), batch=st.integers(1, 16), epochs=st.integers(1, 2),
       lr=st.floats(1e-4, 0.5), rho=st.floats(0, 1), T=st.floats(0.5, 8), kind=st.sampled_from(["supervised", "distill", "multilabel"]),
       seed=st.integers(0, 2**16))
def test_good_runs_give_finite_results(d, k, n, batch, epochs, lr, rho, T, kind, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (torch.rand(n, k, generator=g) > 0.5).float() if kind == "multilabel" else torch.randint(0, k, (n,), generator=g)
    dl = DataLoader(DictDataset(a=x.flip(1), b=x, y=y), batch_size=batch, shuffle=True)
    teacher = net(seed + 1, d, k)
    objective = {"supervised": lambda: Supervised(net(seed, d, k)),
                 "distill": lambda: Distill(net(seed, d, k), teacher, rho=rho, T=T),
                 "multilabel": lambda: Distill(net(seed, d, k), teacher, rho=rho, T=T, loss=multilabel_kd_loss)}[kind]()
    r = fit(objective, dl, epochs=epochs, val_loader=dl, test_loader=dl, num_classes=k, lr=lr, seed=seed, device="cpu",
            progress=False, metric="f1_micro" if kind == "multilabel" else "accuracy")
    assert r.history.train_loss.map(math.isfinite).all() and 0 <= r.best_val <= 1 and 0 <= r.test <= 1
    assert all(torch.isfinite(p).all() for p in r.model.parameters())


@functools.lru_cache(maxsize=1)
def checkpoint() -> bytes:
    "The checkpoint file of a one-epoch KD run."
    with tempfile.TemporaryDirectory() as d:
        fit(Distill(net(0), net(1)), TRAIN, epochs=1, val_loader=VAL, num_classes=2, device="cpu", progress=False, checkpoint_dir=d)
        return (Path(d) / "checkpoint.pt").read_bytes()


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data(), damage=st.sampled_from(["flip", "truncate", "overwrite", "append"]))
def test_damaged_checkpoints_are_refused(data, damage):
    raw = bytearray(checkpoint())
    at = data.draw(st.integers(0, len(raw) - 1))
    if damage == "flip": raw[at] ^= 1 << data.draw(st.integers(0, 7))
    if damage == "truncate": raw = raw[:at]
    if damage == "overwrite": raw[at:at + 8] = data.draw(st.binary(min_size=8, max_size=8).filter(lambda b: b != bytes(raw[at:at + 8])))
    if damage == "append": raw += data.draw(st.binary(min_size=1, max_size=16))
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "checkpoint.pt").write_bytes(bytes(raw))
        with pytest.raises(ValueError, match=f"checkpoint {Path(d) / 'checkpoint.pt'}"):
            fit(Distill(net(0), net(1)), TRAIN, epochs=2, val_loader=VAL, num_classes=2, device="cpu", progress=False, checkpoint_dir=d)


CHANGES = {  # a change to the run -> the fingerprint item it must be refused for
    "rho": lambda kw: kw["objective"].__setattr__("rho", 0.25), "T": lambda kw: kw["objective"].__setattr__("T", 2.0),
    "teacher": lambda kw: kw["objective"].__setattr__("teacher", net(7)), "model": lambda kw: kw["objective"].__setattr__("model", net(8)),
    "loss_fn": lambda kw: kw["objective"].__setattr__("loss_fn", lambda s, t, y, rho, T: kd_loss(s, t, y, rho=rho, T=2 * T)),
    "epochs": lambda kw: kw.__setitem__("epochs", 3), "seed": lambda kw: kw.__setitem__("seed", 1),
    "optimizer": lambda kw: kw.__setitem__("lr", 0.02),
    "val_loader": lambda kw: kw.__setitem__("val_loader", DataLoader(VAL.dataset, batch_size=5)),
    "test_loader": lambda kw: kw.__setitem__("test_loader", VAL),
}


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(change=st.sampled_from(sorted(CHANGES)), row=st.integers(0, 39), col=st.integers(0, 4))
def test_checkpoint_of_another_run_is_refused(change, row, col):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "checkpoint.pt").write_bytes(checkpoint())
        kw = dict(objective=Distill(net(0), net(1)), train_loader=TRAIN, epochs=1, val_loader=VAL, num_classes=2, device="cpu",
                  progress=False, checkpoint_dir=d)
        CHANGES[change](kw)
        with pytest.raises(ValueError, match=f"checkpoint {Path(d) / 'checkpoint.pt'} belongs to a run with other arguments: first difference '{change}'"):
            fit(**kw)
        a = TRAIN.dataset.tensors["a"].clone(); a[row, col] += 1e-3        # one value of the training data, anywhere
        other = DataLoader(DictDataset(a=a, b=X, y=Y), batch_size=10, shuffle=True)
        kw = dict(kw, objective=Distill(net(0), net(1)), train_loader=other, epochs=1, seed=0, lr=0.01,
                  val_loader=VAL, test_loader=None)
        if row in (0, 5, 11, 16, 22, 27, 33, 39):                         # the 8 samples the fingerprint reads
            with pytest.raises(ValueError, match="first difference 'train_loader'"):
                fit(**kw)
