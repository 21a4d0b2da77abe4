"""mfh_nb.experiment from outside: results folders survive a kill at any point of a write without ever being read as
whole when they are not; generated bad input is refused by name; mean ± std and seeds against independent answers."""
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mfh_nb.experiment import (check_count, check_fraction, check_positive, derive_seed, jsonable, mean_std,  # noqa: E402
                               read_results, resolve_device, write_json_atomic, write_results)

JOB = Path(__file__).with_name("results_job.py")
N_RANDOM = int(os.environ.get("MFH_KILL_RUNS", "2"))
KILL_SEED = int(os.environ.get("MFH_KILL_SEED", "0"))


def write_here(out: Path, tag: str) -> None:
    "What the job writes, written by this process (only the killed write needs a process of its own)."
    figs = {}
    for name, slope in (("first", 1), ("second", -1)):
        fig, ax = plt.subplots(figsize=(2, 2)); ax.plot([0, 1], [0, slope]); ax.set_title(tag)
        figs[name] = fig
    write_results(out, "kill test", dict(tag=tag, device="cpu"), figs, 0.1, tag=tag)
    for fig in figs.values(): plt.close(fig)


def kill_point(seed: int) -> tuple[int, bool]:
    "Which atomic replace to stop in (0, 1: the figures, 2: results.json) and whether its temporary is half written."
    rng = random.Random(seed)
    return rng.randrange(3), rng.random() < 0.5


POINTS = [(0, False), (1, True), (2, False), (2, True)]
CASES = [pytest.param(k, p, id=f"replace{k}{'-partial' if p else ''}") for k, p in POINTS] + [
    pytest.param(*kill_point(s), id=f"seed{s}-replace{kill_point(s)[0]}{'-partial' if kill_point(s)[1] else ''}")
    for s in range(KILL_SEED, KILL_SEED + N_RANDOM)]


@pytest.mark.parametrize("k,partial", CASES)
def test_a_killed_write_is_never_read_as_whole(tmp_path, k, partial):
    out = tmp_path / "run"
    write_here(out, "old")
    old = read_results(out)
    proc = subprocess.Popen([sys.executable, str(JOB), "--out", str(out), "--tag", "new", "--pause-at", str(k),
                             *(["--partial"] if partial else [])], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("PAUSED"), "the writer finished before pausing"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    if k == 0:                                   # no new file is in place yet: the old run is intact
        assert read_results(out) == old
    else:                                        # a new figure replaced an old one, results.json is still the old run's
        with pytest.raises(ValueError, match="mixes two runs"):
            read_results(out)
    assert list(out.glob(".*.tmp")), "the kill should leave the writer's temporary file behind"
    write_here(out, "again")
    assert read_results(out)["tag"] == "again"
    assert not list(out.glob(".*.tmp")), "the next write must remove stale temporaries"


def test_read_results_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json does not exist"):
        read_results(tmp_path)


# --- generated input -------------------------------------------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.floats(allow_infinity=False), st.text(max_size=5))
json_tree = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=4), inner, max_size=4)),
                         max_leaves=20)


def without_nan(v):
    if isinstance(v, dict): return {k: without_nan(x) for k, x in v.items()}
    if isinstance(v, list): return [without_nan(x) for x in v]
    return None if isinstance(v, float) and math.isnan(v) else v


@settings(max_examples=100, deadline=None, derandomize=True)
@given(tree=json_tree)
def test_jsonable_round_trips_through_strict_json(tree, tmp_path_factory):
    clean = jsonable(tree)
    assert clean == without_nan(tree)
    path = write_json_atomic(tmp_path_factory.mktemp("j") / "r.json", {"v": clean})   # allow_nan=False: no NaN left
    assert json.loads(path.read_text())["v"] == clean


@settings(max_examples=50, deadline=None, derandomize=True)
@given(key=st.text(min_size=1, max_size=5), bad=st.sampled_from([object(), {1, 2}, b"x", float("inf"), -float("inf")]))
def test_a_value_json_cannot_hold_is_refused_with_its_key(key, bad):
    with pytest.raises((TypeError, ValueError), match=f"results\\['params'\\]\\[{re.escape(repr(key))}\\]"):
        jsonable({"params": {key: bad}})


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.one_of(st.floats(), st.booleans(), st.integers(max_value=-1), st.text(max_size=2), st.none()))
def test_any_bad_seed_is_refused(seed):
    with pytest.raises((TypeError, ValueError), match="seed must"):
        derive_seed(seed, "run")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**64), keys=st.lists(st.one_of(st.integers(0, 2**32), st.text(max_size=4)), max_size=4))
def test_derived_seeds_are_deterministic_63_bit_ints(seed, keys):
    s = derive_seed(seed, *keys)
    assert s == derive_seed(seed, *keys) and 0 <= s < 2**63


@settings(max_examples=60, deadline=None, derandomize=True)
@given(device=st.text(max_size=8).filter(lambda s: s not in ("auto", "cpu") and not s.startswith("cpu:")))
def test_any_unknown_device_is_refused_by_name(device):
    with pytest.raises(ValueError, match="device"):
        resolve_device(device)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(value=st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), st.text(max_size=2)))
def test_check_count_accepts_exactly_the_positive_ints(value):
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if ok: check_count("n", value)
    else:
        with pytest.raises((TypeError, ValueError), match="n must"):
            check_count("n", value)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(value=st.one_of(st.floats(allow_nan=True), st.integers(-3, 3), st.booleans()))
def test_check_positive_and_check_fraction_accept_exactly_their_ranges(value):
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for check, ok in ((check_positive, number and 0 < value < math.inf), (check_fraction, number and 0 <= value < 1)):
        if ok: check("x", value)
        else:
            with pytest.raises((TypeError, ValueError), match="x must"):
                check("x", value)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(groups=st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=5), min_size=1, max_size=4))
def test_mean_std_matches_numpy(groups):
    runs = pd.DataFrame([dict(setting=i, acc=v) for i, g in enumerate(groups) for v in g])
    table = mean_std(runs, ["setting"], ["acc"])
    assert table.n_runs.tolist() == [len(g) for g in groups]
    assert np.allclose(table.acc_mean, [np.mean(g) for g in groups], rtol=1e-9, atol=1e-6)
    for std, g in zip(table.acc_std, groups):
        assert (math.isnan(std) if len(g) == 1 else np.isclose(std, np.std(g, ddof=1), rtol=1e-6, atol=1e-6))
