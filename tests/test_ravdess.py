"""RAVDESS: the loader on the fixture and on damaged copies, prepare_ravdess on a tiny generated download, and the
Table 8 notebook under papermill with tiny parameters."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mfh_nb.data.ravdess import (MFCC_SHAPE, SPLIT_FILES, RavdessDataset, prepare_ravdess, read_split, write_fixture,
                                 write_raw_fixture)
from mfh_nb.experiments.ravdess import Table8Config, WithTeacherLogits, table8_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ravdess") / "data"
    write_fixture(root, n_clips=8, frames_per_clip=3, seed=1)
    return root


def damaged(tmp_path, edit):
    "A fresh small fixture with `edit(root, first_training_row)` applied."
    root = tmp_path / "data"
    write_fixture(root, n_clips=8, frames_per_clip=2, seed=2)
    first = read_split(root / "data_file" / "spa_dl.csv")[0]
    edit(root, first)
    return root, first


def rewrite_label(root, first, label):
    path = root / "data_file" / "spa_dl.csv"
    lines = path.read_text().splitlines()
    lines[1] = f"{first[0]},{first[1]},{label}"
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("edit,exc,words", [
    (lambda r, f: (r / "aud_features" / f[0]).unlink(), FileNotFoundError, "(spa_dl.csv line 2) does not exist"),
    (lambda r, f: (r / "vid_features" / f[1]).unlink(), FileNotFoundError, "(spa_dl.csv line 2) does not exist"),
    (lambda r, f: np.save(r / "aud_features" / f[0], np.zeros(MFCC_SHAPE)), ValueError, "float32 MFCCs of shape (40, 256), got float64"),
    (lambda r, f: np.save(r / "aud_features" / f[0], np.zeros((40, 128), np.float32)), ValueError, "got float32 (40, 128)"),
    (lambda r, f: (r / "vid_features" / f[1]).write_bytes(b"\xff\xd8 not a jpeg"), ValueError, "(spa_dl.csv line 2) does not decode"),
    (lambda r, f: rewrite_label(r, f, 8), ValueError, "line 2: label 8 is outside 0..7"),
    (lambda r, f: rewrite_label(r, f, "-1"), ValueError, "line 2: label -1 is outside 0..7"),
    (lambda r, f: rewrite_label(r, f, "sad"), ValueError, "line 2: label 'sad' is not an integer"),
    (lambda r, f: (r / "data_file" / "spa_dl.csv").unlink(), FileNotFoundError, "spa_dl.csv does not exist"),
])
def test_bad_files_fail_when_the_dataset_is_built(tmp_path, edit, exc, words):
    root, first = damaged(tmp_path, edit)
    with pytest.raises(exc) as err:
        RavdessDataset(root, "train")
    assert words in str(err.value)


def test_a_frame_damaged_after_its_header_fails_when_read_naming_file_and_row(tmp_path):
    def truncate(root, first):
        path = root / "vid_features" / first[1]
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])                         # the header survives, the scan is cut
    root, first = damaged(tmp_path, truncate)
    with pytest.raises(ValueError, match=r"spa_dl.csv line 2\) does not decode"):
        RavdessDataset(root, "train", verify="decode")
    ds = RavdessDataset(root, "train")                                  # the header alone is fine
    with pytest.raises(ValueError, match=rf"{first[1]} \(spa_dl.csv line 2\) does not decode"):
        ds[0]


def test_frames_of_different_sizes_are_refused(tmp_path):
    def resize(root, first):
        from PIL import Image
        Image.new("RGB", (30, 20)).save(root / "vid_features" / first[1])
    root, _ = damaged(tmp_path, resize)
    with pytest.raises(ValueError, match="frames must share one size"):
        RavdessDataset(root, "train")


def test_header_and_no_header_read_the_same_pairs(tmp_path, fixture_root):
    other = tmp_path / "data"
    write_fixture(other, n_clips=8, frames_per_clip=3, seed=1, header=False)
    for split in SPLIT_FILES:
        a, b = RavdessDataset(fixture_root, split), RavdessDataset(other, split)
        assert a.audio_files == b.audio_files and torch.equal(a.labels, b.labels)
    assert (other / "data_file" / "spa_dl.csv").read_text().splitlines()[0].split(",")[2].isdigit()


def test_the_fixture_follows_its_planted_diagram(fixture_root):
    ds = RavdessDataset(fixture_root, "train")
    for i in range(len(ds)):
        item, y = ds[i], int(ds.labels[i])
        bands = item["audio"][0, [4, 16, 28]].mean(1)                     # the band of bit j starts at row 4 + 12 j
        assert [(y >> j) & 1 for j in range(3)] == (bands > 0).long().tolist()
        rgb = item["image"].mean((1, 2))                                  # bit j raises colour channel j
        assert [(y >> j) & 1 for j in range(2)] == (rgb[:2] > 0).long().tolist()


def test_swap_frames_bug_swaps_mfcc_frames_0_and_2_only(fixture_root):
    plain = RavdessDataset(fixture_root, "val", keys=("audio",))[0]["audio"]
    swapped = RavdessDataset(fixture_root, "val", keys=("audio",), swap_frames_bug=True)[0]["audio"]
    assert torch.equal(swapped[..., 0], plain[..., 2]) and torch.equal(swapped[..., 2], plain[..., 0])
    assert torch.equal(swapped[..., 3:], plain[..., 3:]) and not torch.equal(swapped, plain)


def test_prepare_ravdess_builds_the_release_layout(tmp_path):
    raw = tmp_path / "raw"
    write_raw_fixture(raw, clips=[(1, 1), (2, 1), (4, 2), (8, 2)], seconds=1.6)
    sizes = prepare_ravdess(raw, tmp_path / "out", image_size=(32, 64), progress=False)
    again = prepare_ravdess(raw, tmp_path / "again", image_size=(32, 64), progress=False)
    assert sum(sizes.values()) == 4 * 4 and sizes == again                # 1.6 s: frames at 0, 0.5, 1.0, 1.5 s
    for split in SPLIT_FILES:
        assert (tmp_path / "out" / "data_file" / SPLIT_FILES[split]).read_text() == \
               (tmp_path / "again" / "data_file" / SPLIT_FILES[split]).read_text()
        ds = RavdessDataset(tmp_path / "out", split)
        assert ds.frame_size == (32, 64) and set(ds.labels.tolist()) <= {0, 1, 3, 7}
    mfcc = np.load(tmp_path / "out" / "aud_features" / "03-01-08-01-01-01-02.npy")
    assert mfcc.dtype == np.float32 and mfcc.shape == MFCC_SHAPE and np.isfinite(mfcc).all()


def test_prepare_ravdess_refuses_an_audio_clip_without_video(tmp_path):
    raw = tmp_path / "raw"
    write_raw_fixture(raw, clips=[(1, 1), (3, 1)])
    (raw / "Actor_01" / "01-01-03-01-01-01-01.mp4").unlink()
    with pytest.raises(FileNotFoundError, match="03-01-03-01-01-01-01.wav has no video"):
        prepare_ravdess(raw, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="raw_dir"):
        prepare_ravdess(tmp_path / "nowhere", tmp_path / "out", progress=False)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(ratios=[]), TypeError, "ratios must be a non-empty list"),
    (dict(ratios="0.5"), TypeError, "ratios must be a non-empty list"),
    (dict(ratios=[0.5, 1.0]), ValueError, "ratios must be in [0, 1)"),
    (dict(teacher="audio"), ValueError, "teacher must be 'joint' or 'independent'"),
    (dict(joint_epochs=0), ValueError, "joint_epochs must be positive"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
    (dict(kd_lr=0), ValueError, "kd_lr must be positive"),
    (dict(alg1_samples=-1), ValueError, "alg1_samples must be >= 0"),
    (dict(device="tpu"), ValueError, "device 'tpu'"),
    (dict(distance="kl"), ValueError, "distance must be one of"),
    (dict(width=0), ValueError, "width must be positive"),
    (dict(M=1.5), TypeError, "M must be an int"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer must be 'sgd' or 'adam'"),
])
def test_bad_parameters_are_refused_before_any_work(kwargs, exc, words):
    with pytest.raises(exc) as err:
        Table8Config(**kwargs)
    assert words in str(err.value)


def test_teacher_logits_must_match_the_dataset(fixture_root):
    ds = RavdessDataset(fixture_root, "train", keys=("image",))
    item = WithTeacherLogits(ds, torch.arange(len(ds) * 8.0).view(-1, 8))[3]
    assert torch.equal(item["teacher_logits"], torch.arange(24.0, 32.0)) and "image" in item
    with pytest.raises(ValueError, match="teacher logits for a dataset of"):
        WithTeacherLogits(ds, torch.zeros(len(ds) + 1, 8))


def test_an_independently_trained_teacher_runs(fixture_root):
    data = {s: RavdessDataset(fixture_root, s) for s in ("train", "val", "test")}
    cfg = Table8Config(ratios=[0.5], teacher="independent", width=4, joint_epochs=1, kd_epochs=1, batch_size=8, M=2, device="cpu")
    rows, step1, sal, f1, fc2 = table8_run(data, cfg, run=0)
    assert [(r["teacher"], r["ratio"]) for r in rows] == [("regular", 0.0), ("modality-general", 0.5), ("random", 0.5),
                                                         ("modality-specific", 0.5)]
    assert sal.shape == (16,) and fc2["train"].shape == (len(data["train"]), 16)


def test_notebook_runs_under_papermill(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_fixture(data, n_clips=8, frames_per_clip=3, seed=3)
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "26_ravdess.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "data_dir", str(data), "-p", "out_dir", str(out), "-p", "device", "cpu", "-p", "n_runs", "2",
           "-y", "ratios: [0.5]", "-p", "width", "4", "-p", "batch_size", "8", "-p", "num_workers", "0", "-p", "joint_epochs", "1",
           "-p", "kd_epochs", "1", "-p", "M", "2", "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["n_runs"] == 2 and res["params"]["ratios"] == [0.5]
    assert res["params"]["config"]["optimizer"] == "sgd" and res["params"]["config"]["kd_lr"] == 0.00125  # real data: the reference's
    assert len(res["runs"]) == 2 * 4 and len(res["salience"]) == 2 and len(res["salience"][0]) == 16
    assert [r["quantity"] for r in res["vs_paper"]][0].startswith("Table 4 / Table 8")
    assert {r["paper"] for r in res["vs_paper"]} == {77.22, 42.66, 64.75, 78.28}
    assert all(r["ours_std"] is not None for r in res["vs_paper"])
    for fig in res["figures"]:
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"
