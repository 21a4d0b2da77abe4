"""mfh_nb.train in real processes: a training job killed with SIGKILL and restarted ends with the same numbers as an
uninterrupted one; a 2-process gloo DDP job agrees with the 1-process job."""
import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

JOB = Path(__file__).with_name("train_job.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")


def run_job(out: Path, *args: str) -> dict:
    subprocess.run([sys.executable, str(JOB), "--out", str(out), *args], check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


EPOCHS, BATCHES = 6, 2048 // 32           # train_job.py's defaults
FIXED_POINTS = ["teacher:0:save-partial", "teacher:1:save-written", "student:2:save-partial", "student:0:5"]
N_RANDOM = int(os.environ.get("MFH_KILL_RUNS", "4"))       # random kill points per test run (CI: the default)
KILL_SEED = int(os.environ.get("MFH_KILL_SEED", "0"))      # first seed; a failing id names the seed that replays it


def kill_point(seed: int) -> str:
    "A kill point drawn from `seed`: a role, an epoch, and a batch or one of the two moments inside a checkpoint write."
    rng = random.Random(seed)
    point = rng.choice([str(rng.randrange(BATCHES)), "save-written", "save-partial"])
    return f"{rng.choice(['teacher', 'student'])}:{rng.randrange(EPOCHS)}:{point}"


def kill_at(point: str, ckpt: Path, out: Path) -> None:
    "Start the job paused at `point`, wait until it says so, and SIGKILL it there."
    proc = subprocess.Popen([sys.executable, str(JOB), "--out", str(out), "--ckpt", str(ckpt), "--pause-at", point],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("PAUSED"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None and proc.returncode is None: proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not out.exists(), f"the job ended before pausing at {point}"


def expected_resume(point: str) -> dict:
    "The epoch each role resumes after once killed at `point` (None: no checkpoint had been written yet)."
    role, epoch, _ = point.split(":")
    before = int(epoch) - 1 if int(epoch) > 0 else None
    return {"teacher": before, "student": None} if role == "teacher" else {"teacher": EPOCHS - 1, "student": before}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_job(tmp_path_factory.mktemp("plain") / "r.json")


KILL_POINTS = [pytest.param(p, id=p) for p in FIXED_POINTS] + [
    pytest.param(kill_point(s), id=f"seed{s}-{kill_point(s)}") for s in range(KILL_SEED, KILL_SEED + N_RANDOM)]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_job_resumes_to_the_same_result(tmp_path, uninterrupted, point):
    kill_at(point, tmp_path / "ckpt", tmp_path / "r.json")
    resumed = run_job(tmp_path / "r.json", "--ckpt", str(tmp_path / "ckpt"))
    for name, after in expected_resume(point).items():
        assert resumed[name]["resumed_from"] == after, (name, resumed[name]["resumed_from"], after)
        for key in ("history", "best_epoch", "best_val", "test", "weights"):
            assert resumed[name][key] == uninterrupted[name][key], (name, key)
    assert not list((tmp_path / "ckpt").rglob("*.tmp")), "a killed writer's temporary file survived the resume"


def test_two_process_gloo_job_agrees_with_one_process(tmp_path):
    one = run_job(tmp_path / "one.json", "--batch-size", "2048")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(JOB), "--out", str(tmp_path / "two.json"),
                    "--batch-size", "1024"], check=True, capture_output=True, text=True, env=env, timeout=300)
    two = json.loads((tmp_path / "two.json").read_text())
    for name in ("teacher", "student"):
        for h1, h2 in zip(one[name]["history"], two[name]["history"]):
            assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-4)
            assert h2["val"] == pytest.approx(h1["val"], abs=1 / 256 + 1e-9)
        assert two[name]["weights"] == pytest.approx(one[name]["weights"], rel=1e-3, abs=1e-4)
        assert two[name]["test"] == pytest.approx(one[name]["test"], abs=2 / 512)


# --- in-process checks of the paths the notebook does not exercise ---------------------------------------------

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from mfh_nb.kd import dense_kd_loss, multilabel_kd_loss  # noqa: E402
from mfh_nb.train import Callback, DictDataset, Distill, Supervised, fit  # noqa: E402


class _StopAt(Callback):
    def __init__(self, epoch): self.epoch = epoch
    def on_epoch_end(self, state):
        if state.epoch == self.epoch: raise KeyboardInterrupt


def _toy(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def test_scheduler_state_survives_a_resume(tmp_path):
    x, y = _toy()
    dl = DataLoader(DictDataset(b=x, y=y), batch_size=16, shuffle=True)
    kw = dict(epochs=5, val_loader=dl, num_classes=2, device="cpu", progress=False, lr=0.1,
              scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5))
    model = lambda: (torch.manual_seed(0), nn.Linear(5, 2))[1]
    plain = fit(Supervised(model()), dl, **kw)
    with pytest.raises(KeyboardInterrupt):
        fit(Supervised(model()), dl, checkpoint_dir=tmp_path, callbacks=[_StopAt(2)], **kw)
    resumed = fit(Supervised(model()), dl, checkpoint_dir=tmp_path, **kw)
    assert resumed.resumed_from == 1
    assert resumed.history.lr.tolist() == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert resumed.history.drop(columns="seconds").equals(plain.history.drop(columns="seconds"))


def test_multilabel_distillation_with_f1():
    g = torch.Generator().manual_seed(1)
    xa, xb = torch.randn(80, 6, generator=g), torch.randn(80, 4, generator=g)
    y = torch.stack([xa[:, 0] > 0, xb[:, 0] > 0], 1).float()
    dl = DataLoader(DictDataset(a=xa, b=xb, y=y), batch_size=20)
    kw = dict(epochs=30, val_loader=dl, test_loader=dl, num_classes=2, device="cpu", progress=False, lr=0.2)
    teacher = fit(Supervised(nn.Linear(6, 2), key="a", loss=F.binary_cross_entropy_with_logits), dl, metric="f1_micro", **kw)
    student = fit(Distill(nn.Linear(4, 2), teacher.model, loss=multilabel_kd_loss), dl, metric="f1_macro", **kw)
    assert teacher.test > 0.6 and 0 < student.test <= 1


def test_dense_distillation_with_miou():
    g = torch.Generator().manual_seed(2)
    xa, xb = torch.randn(16, 2, 6, 6, generator=g), torch.randn(16, 3, 6, 6, generator=g)
    y = (xa[:, 0] > 0).long()
    y[:, 0, 0] = 255                                           # an unlabelled pixel per image
    dl = DataLoader(DictDataset(a=xa, b=xb, y=y), batch_size=4)
    kw = dict(epochs=10, val_loader=dl, test_loader=dl, num_classes=2, device="cpu", progress=False, lr=0.2, metric="miou")
    teacher = fit(Supervised(nn.Conv2d(2, 2, 1), key="a", loss=lambda z, t: F.cross_entropy(z, t, ignore_index=255)), dl, **kw)
    student = fit(Distill(nn.Conv2d(3, 2, 1), teacher.model, loss=dense_kd_loss), dl, **kw)
    assert teacher.test > 0.8 and 0 <= student.test <= 1


# --- the bad-input contract: errors naming the argument, before any training ---------------------------------------

class _Counter(Callback):
    def __init__(self): self.batches = 0
    def on_batch_end(self, state): self.batches += 1


def _loaders(n=48, seed=0, **label_kw):
    x, y = _toy(n, seed)
    y = label_kw.get("y", y)
    return DataLoader(DictDataset(b=x, y=y), batch_size=16, shuffle=True), DataLoader(DictDataset(b=x, y=y), batch_size=16)


def _fails_before_training(exc, words, objective=None, train=None, **kw):
    counter = _Counter()
    tl, vl = _loaders()
    kw = {"epochs": 2, "device": "cpu", "progress": False, "callbacks": [counter], **kw}
    with pytest.raises(exc, match=words):
        fit(objective or Supervised(nn.Linear(5, 2)), tl if train is None else train, **kw)
    assert counter.batches == 0


def test_bad_loaders_fail_before_training(tmp_path):
    x, y = _toy(48)
    tl, vl = _loaders()
    _fails_before_training(TypeError, "train_loader must be a torch DataLoader", train=list(tl))
    _fails_before_training(TypeError, "val_loader must be a torch DataLoader", val_loader=[{"b": x, "y": y}], num_classes=2)
    _fails_before_training(ValueError, "train_loader must yield batches whose tensors share a batch dimension",
                           train=DataLoader(DictDataset(b=x, y=y), batch_size=None))
    _fails_before_training(ValueError, "label_key 'y' is not a key of val_loader's batches",
                           val_loader=DataLoader(DictDataset(b=x), batch_size=16), num_classes=2)
    (tmp_path / "file").write_text("x")
    _fails_before_training(ValueError, "checkpoint_dir .* is a file", checkpoint_dir=tmp_path / "file")
    _fails_before_training(ValueError, "device 'nonsense'", device="nonsense")
    _fails_before_training(ValueError, "num_classes is 3 but the model's outputs have shape", val_loader=vl, num_classes=3)
    _fails_before_training(ValueError, "num_classes is required", val_loader=vl)


@pytest.mark.parametrize("dtype", [torch.int32, torch.float32, torch.uint8])
def test_label_dtypes_fail_before_training(dtype):
    x, y = _toy(48)
    tl = DataLoader(DictDataset(b=x, y=y.to(dtype)), batch_size=16)
    if dtype != torch.uint8:                                                                   # cross-entropy takes uint8
        _fails_before_training(ValueError, "the objective fails on train_loader's first batch", train=tl)
    _fails_before_training(TypeError, "train_loader's labels 'y' must be int64", train=tl, val_loader=tl, num_classes=2)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(epochs=1.5), TypeError, "epochs must be an int"), (dict(lr=float("nan")), ValueError, "lr must be positive"),
    (dict(momentum="0.9"), TypeError, "momentum must be a number"), (dict(momentum=1.0), ValueError, "momentum must be in"),
    (dict(weight_decay=-1), ValueError, "weight_decay"), (dict(seed=True), TypeError, "seed must be an int"),
    (dict(seed=1.5), TypeError, "seed must be an int"), (dict(amp="yes"), TypeError, "amp must be True or False"),
    (dict(callbacks=[object()]), TypeError, r"callbacks\[0\] has none of the hooks"), (dict(optimizer="adam"), TypeError, "optimizer must be callable"),
    (dict(metric="auc"), ValueError, "metric must be one of"),
])
def test_bad_settings_fail_before_training(kwargs, exc, words):
    counter = _Counter()
    tl, _ = _loaders()
    with pytest.raises(exc, match=words):
        fit(Supervised(nn.Linear(5, 2)), tl, **{"epochs": 1, "device": "cpu", "progress": False, **kwargs, "callbacks": kwargs.get("callbacks", [counter])})
    assert counter.batches == 0


def test_no_num_classes_needed_without_scored_data_and_a_custom_objective():
    from mfh_nb.train import Objective

    class Regression:
        label_key = "y"
        def __init__(self, model): self.model = model
        def required_keys(self): return {"b": "Regression", "y": "label_key"}
        def prepare(self, device): pass
        def outputs(self, model, batch): return model(batch["b"])
        def loss(self, model, batch): return F.mse_loss(self.outputs(model, batch)[:, 0], batch["y"])

    x, _ = _toy(64)
    dl = DataLoader(DictDataset(b=x, y=x[:, 0] - 2 * x[:, 1]), batch_size=16)
    assert isinstance(Regression(nn.Linear(5, 1)), Objective)
    r = fit(Regression(nn.Linear(5, 1)), dl, epochs=30, lr=0.05, device="cpu", progress=False)
    assert r.best_val is None and r.test is None and r.history.train_loss.iloc[-1] < 0.01
    with pytest.raises(TypeError, match=r"lacks \['prepare'\]"):
        fit(type("NoPrepare", (), {"model": nn.Linear(5, 1), "label_key": "y", "required_keys": lambda s: {}, "outputs": lambda s, m, b: 0,
                                   "loss": lambda s, m, b: 0})(), dl, epochs=1)


# --- silent wrong results: each of these tests fails on the code at commit 52e4e12 ----------------------------------

def _student_kw(**kw):
    x, y = _toy(64, 3)
    xa = torch.randn(64, 4, generator=torch.Generator().manual_seed(4))
    dl = DataLoader(DictDataset(a=xa, b=x, y=y), batch_size=16, shuffle=True)
    return {"train_loader": dl, "epochs": 2, "val_loader": DataLoader(dl.dataset, batch_size=16), "num_classes": 2, "device": "cpu",
            "progress": False, **kw}


def _net(seed, d=5):
    torch.manual_seed(seed)
    return nn.Linear(d, 2)


def test_checkpoint_of_another_teacher_is_refused(tmp_path):
    fit(Distill(_net(0), _net(1, 4)), **_student_kw(checkpoint_dir=tmp_path))
    with pytest.raises(ValueError, match="checkpoint .*checkpoint.pt belongs to a run with other arguments: first difference 'teacher'"):
        fit(Distill(_net(0), _net(2, 4)), **_student_kw(checkpoint_dir=tmp_path))


def test_checkpoint_of_other_data_student_loss_or_batch_size_is_refused(tmp_path):
    kw = _student_kw(checkpoint_dir=tmp_path)
    fit(Distill(_net(0), _net(1, 4)), **kw)
    ds = kw["train_loader"].dataset
    other = DictDataset(a=ds.tensors["a"], b=ds.tensors["b"].flip(0), y=ds.tensors["y"])
    changes = {"train_loader": dict(kw, train_loader=DataLoader(other, batch_size=16, shuffle=True)),
               "model": kw, "loss_fn": kw,
               "train_loader'": dict(kw, train_loader=DataLoader(ds, batch_size=8, shuffle=True))}
    objectives = {"train_loader": Distill(_net(0), _net(1, 4)), "model": Distill(_net(5), _net(1, 4)),
                  "loss_fn": Distill(_net(0), _net(1, 4), loss=lambda s, t, y, rho, T: F.cross_entropy(s, y)),
                  "train_loader'": Distill(_net(0), _net(1, 4))}
    for item, fit_kw in changes.items():
        with pytest.raises(ValueError, match=f"first difference '{item.rstrip(chr(39))}'"):
            fit(objectives[item], **fit_kw)


def test_checkpoint_of_another_optimiser_scheduler_or_architecture_is_refused(tmp_path):
    fit(Supervised(_net(0)), **_student_kw(checkpoint_dir=tmp_path))
    for item, obj, kw in [("optimizer", Supervised(_net(0)), dict(optimizer=lambda p: torch.optim.Adam(p, lr=0.01))),
                          ("scheduler", Supervised(_net(0)), dict(scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1))),
                          ("model", Supervised(nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))), {})]:
        with pytest.raises(ValueError, match=f"first difference '{item}'"):
            fit(obj, **_student_kw(checkpoint_dir=tmp_path, **kw))


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "garbage", "empty"])
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    best = fit(Supervised(_net(0)), **_student_kw(checkpoint_dir=tmp_path)).model.weight.detach().numpy().tobytes()
    ckpt = tmp_path / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    if damage == "truncate": data = data[: len(data) // 2]
    if damage == "bitflip": data[data.find(best) + 2] ^= 0x10      # one bit of a saved weight: the file still loads
    if damage == "garbage": data = bytearray(b"\x00" * len(data))
    if damage == "empty": data = bytearray()
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"checkpoint {re.escape(str(ckpt))} (is damaged|is truncated)"):
        fit(Supervised(_net(0)), **_student_kw(checkpoint_dir=tmp_path))             # the same run: it would resume


def test_validation_labels_outside_num_classes_are_refused():
    tl, _ = _loaders()
    x, y = _toy(48)
    y = y.clone(); y[40] = 2                                  # one label outside [0, 2), in the last batch
    val = DataLoader(DictDataset(b=x, y=y), batch_size=16)
    with pytest.raises(ValueError, match=r"val_loader's labels 'y' \(batch 2\) has class 2 outside \[0, num_classes=2\)"):
        fit(Supervised(nn.Linear(5, 2)), tl, epochs=1, val_loader=val, num_classes=2, device="cpu", progress=False)


def test_nan_inputs_in_validation_data_are_refused():
    tl, _ = _loaders()
    x, y = _toy(48)
    x = x.clone(); x[40, 1] = float("nan")                    # in the last batch: not seen by the up-front check
    val = DataLoader(DictDataset(b=x, y=y), batch_size=16)
    with pytest.raises(ValueError, match="val_loader: the model's outputs are not finite at batch 2"):
        fit(Supervised(nn.Linear(5, 2)), tl, epochs=1, val_loader=val, num_classes=2, device="cpu", progress=False)


def test_scored_loaders_need_only_the_keys_the_outputs_read():
    # a Distill teacher's inputs (here precomputed logits under "t") need not be in the val/test batches
    x, y = _toy()
    soft = torch.randn(len(x), 2)
    train_dl = DataLoader(DictDataset(b=x, t=soft, y=y), batch_size=16)
    val_dl = DataLoader(DictDataset(b=x, y=y), batch_size=16)
    r = fit(Distill(nn.Linear(5, 2), nn.Identity(), teacher_keys="t"), train_dl, epochs=1, val_loader=val_dl,
            test_loader=val_dl, num_classes=2, device="cpu", progress=False)
    assert r.test is not None
    with pytest.raises(ValueError, match="student_key 'b' is not a key of val_loader"):
        fit(Distill(nn.Linear(5, 2), nn.Identity(), teacher_keys="t"), train_dl, epochs=1, num_classes=2,
            val_loader=DataLoader(DictDataset(z=x, y=y), batch_size=16), device="cpu", progress=False)
