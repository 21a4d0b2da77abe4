"""mfh_nb.mvd under generated input: every valid Venn diagram gives consistent proportions and samples whose shared
columns agree; every bad argument is refused with a TypeError/ValueError naming it, before any sampling."""
import math

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from mfh_nb import mvd

counts = st.integers(0, 6)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def venn_specs(draw):
    k, a, b = draw(counts), draw(counts), draw(counts)
    assume(k + a + b > 0)
    extra_a, extra_b = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    d_a, d_b = max(1, k + a + extra_a), max(1, k + b + extra_b)
    spec = mvd.venn_spec(k, a, b, d_a=d_a, d_b=d_b, n_unseen=draw(st.integers(0, 3)), n_classes=draw(st.integers(2, 4)))
    return mvd.with_random_columns(spec, draw(st.integers(0, 2**32)))


@SETTINGS
@given(spec=venn_specs(), n=st.integers(1, 40), seed=st.integers(0, 2**40))
def test_valid_diagrams_give_consistent_proportions_and_samples(spec, n, seed):
    s = mvd.summary(spec)
    assert math.isclose(spec.alpha + spec.beta + spec.gamma, 1.0)
    assert s["shared"] + s["a_only"] + s["b_only"] == len(spec.decisive_union)
    assert s["unseen"] + len(spec.decisive_union) == spec.d
    batch = mvd.sample(mvd.make_task(spec, seed), n, seed)
    assert batch["a"].shape == (n, spec.d_a) and batch["b"].shape == (n, spec.d_b) and batch["y"].shape == (n,)
    assert torch.isfinite(batch["a"]).all() and int(batch["y"].min()) >= 0 and int(batch["y"].max()) < spec.n_classes
    for ca, cb in mvd.shared_pairs(spec):
        assert torch.equal(batch["a"][:, ca], batch["b"][:, cb])
    again = mvd.sample(mvd.make_task(spec, seed), n, seed)
    assert all(torch.equal(batch[k], again[k]) for k in batch)


bad_int = st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), st.text(max_size=2), st.none())


@SETTINGS
@given(field=st.sampled_from(["d", "d_a", "d_b"]), value=bad_int)
def test_bad_sizes_are_refused_by_name(field, value):
    args = dict(d=4, d_a=4, d_b=4, J_a=(0, 1), J_b=(1, 2))
    with pytest.raises((TypeError, ValueError), match=field):
        mvd.MVDSpec(**{**args, field: value})


@SETTINGS
@given(field=st.sampled_from(["J_a", "J_b", "cols_a", "cols_b"]),
       value=st.one_of(st.integers(), st.text(min_size=1, max_size=2), st.lists(st.integers(-3, 12), min_size=1, max_size=4)))
def test_bad_index_sets_are_refused_by_name(field, value):
    args = dict(d=6, d_a=5, d_b=5, J_a=(0, 1), J_b=(1, 2), cols_a=(0, 1), cols_b=(3, 4))
    candidate = {**args, field: value}
    try: mvd.MVDSpec(**candidate)
    except (TypeError, ValueError) as e:
        assert field.split("_")[0] in str(e) or "|J_" in str(e)
        return
    # accepted: then it must really be a valid diagram of unique in-range indices of matching lengths
    v = tuple(value)
    upper = 6 if field.startswith("J") else 5
    assert len(set(v)) == len(v) and all(0 <= i < upper for i in v)


@SETTINGS
@given(count=st.sampled_from(["n_shared", "n_a_only", "n_b_only", "n_unseen"]),
       value=st.one_of(st.integers(max_value=-1), st.integers(10**6 + 1, 10**12), st.floats(), st.booleans()))
def test_bad_venn_counts_are_refused_by_name(count, value):
    args = dict(n_shared=1, n_a_only=1, n_b_only=1, d_a=5, d_b=5)
    with pytest.raises((TypeError, ValueError), match=count):
        mvd.venn_spec(**{**args, count: value})


@SETTINGS
@given(seed=st.one_of(st.floats(), st.booleans(), st.integers(max_value=-1), st.integers(min_value=2**63), st.text(max_size=2)))
def test_bad_seeds_are_refused_everywhere(seed):
    spec = mvd.fig2_specs()[1]
    task = mvd.make_task(spec)
    for call in (lambda: mvd.make_task(spec, seed), lambda: mvd.sample(task, 3, seed), lambda: mvd.train_test(task, 3, 3, seed),
                 lambda: mvd.with_random_columns(spec, seed)):
        with pytest.raises((TypeError, ValueError), match="seed must"):
            call()


@SETTINGS
@given(n=bad_int)
def test_bad_sample_counts_are_refused_by_name(n):
    task = mvd.make_task(mvd.fig2_specs()[1])
    with pytest.raises((TypeError, ValueError), match="n must"):
        mvd.sample(task, n)
    with pytest.raises((TypeError, ValueError), match="n_train must"):
        mvd.train_test(task, n, 3)


@SETTINGS
@given(value=st.sampled_from([float("nan"), float("inf"), -float("inf")]), where=st.integers(0, 19))
def test_non_finite_hyperplanes_are_refused(value, where):
    delta = torch.randn(20); delta[where] = value
    with pytest.raises(ValueError, match="delta must be a finite"):
        mvd.make_task(mvd.fig2_specs()[0], delta=delta)


@SETTINGS
@given(out=st.sampled_from(["none", "rows", "int", "nan", "1d"]), which=st.sampled_from(["g_a", "g_b"]))
def test_generating_functions_that_return_the_wrong_thing_are_refused_by_name(out, which):
    bad = {"none": lambda z: None, "rows": lambda z: z[:1], "int": lambda z: z.long(), "nan": lambda z: z * float("nan"),
           "1d": lambda z: z[:, 0]}[out]
    task = mvd.make_task(mvd.fig2_specs()[0], **{which: bad})
    with pytest.raises((TypeError, ValueError), match=which):
        mvd.sample(task, 4)


@SETTINGS
@given(spec=st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just({"d": 3})))
def test_functions_of_a_spec_refuse_anything_else(spec):
    for call in (mvd.summary, mvd.shared_pairs, lambda s: mvd.columns_of(s, "a", [0]), lambda s: mvd.with_random_columns(s, 0),
                 mvd.make_task, mvd.draw_venn):
        with pytest.raises(TypeError, match="spec must be an MVDSpec"):
            call(spec)


@SETTINGS
@given(dim=bad_int)
def test_random_nonlinear_map_refuses_bad_widths(dim):
    with pytest.raises((TypeError, ValueError), match="dim must"):
        mvd.RandomNonlinearMap(dim)
