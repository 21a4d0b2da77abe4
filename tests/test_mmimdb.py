"""MM-IMDB: the HDF5 loader on fixtures (workers, split rules, bad files), the experiment's options and parameter
checks, and the Table 7 notebook under papermill with tiny parameters."""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from mfh_nb.data.mmimdb import MMIMDB, MULTIBENCH_SPLIT, TARGET_NAMES, fuel_split_array, teacher_student_split, write_fixture
from mfh_nb.experiments.mmimdb import PAPER, Relabelled, Table7Config, run_table7, table7_file

from papermill_check import assert_refused_before_any_work

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_train=64, n_val=32, n_test=48)


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("mmimdb"), **TINY)


def edited_copy(src: Path, dst: Path, drop: str = "", drop_attr: str = "", attrs: dict | None = None) -> Path:
    "A copy of an HDF5 file without one dataset and/or root attribute, with root attributes set from `attrs`."
    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        for k in f:
            if k != drop: f.copy(k, g)
        for k, v in f.attrs.items():
            if k != drop_attr: g.attrs[k] = v
        for k, v in (attrs or {}).items(): g.attrs[k] = v
    return dst


def release_sized(path: Path, split: dict | None) -> Path:
    "A file of the release's 25,959 rows whose datasets are declared but never written (HDF5 allocates them lazily)."
    n = MULTIBENCH_SPLIT["test"][1]
    with h5py.File(path, "w") as f:
        f.create_dataset("features", (n, 300), "f4"); f.create_dataset("vgg_features", (n, 4096), "f4")
        f.create_dataset("genres", (n, 23), "i4").attrs["target_names"] = json.dumps(TARGET_NAMES)
        if split: f.attrs["split"] = fuel_split_array(split, ["features", "vgg_features", "genres"])
    return path


def test_items_and_batches(fixture_file):
    ds = {s: MMIMDB(fixture_file, s) for s in ("train", "val", "test")}
    assert [len(d) for d in ds.values()] == [64, 32, 48]
    item = ds["test"][47]
    assert {k: tuple(v.shape) for k, v in item.items()} == {"text": (300,), "image": (4096,), "y": (2,)}
    assert all(v.dtype == torch.float32 for v in item.values())
    with h5py.File(fixture_file) as f:
        assert np.array_equal(item["text"].numpy(), f["features"][96 + 47])
        assert item["y"].tolist() == f["genres"][96 + 47, :2].tolist()
    with pytest.raises(IndexError):
        ds["val"][32]


def test_workers_read_the_same_batches_as_the_main_process(fixture_file):
    ds = MMIMDB(fixture_file, "train")
    ds[0]                                                    # the parent holds an open handle before the workers fork
    loader = lambda w: DataLoader(Subset(ds, list(range(0, 64, 3))), batch_size=5, shuffle=True, num_workers=w,
                                  generator=torch.Generator().manual_seed(0))
    for a, b in zip(loader(0), loader(2), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_relabelled_rows_keep_their_features(fixture_file):
    rows = Subset(MMIMDB(fixture_file, "train"), [5, 1, 9])
    y = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    batch = next(iter(DataLoader(Relabelled(rows, y), batch_size=3)))
    assert torch.equal(batch["y"], y) and torch.equal(batch["text"][1], rows[1]["text"])
    with pytest.raises(ValueError, match="2 labels for 3 rows"):
        Relabelled(rows, y[:2])


def test_teacher_student_split_is_seeded_disjoint_and_complete():
    t, s = teacher_student_split(15552, seed=3)
    assert len(t) == len(s) == 7776 and not set(t.tolist()) & set(s.tolist())
    assert torch.equal(torch.cat([t, s]).sort().values, torch.arange(15552))
    assert torch.equal(teacher_student_split(15552, seed=3)[0], t) and not torch.equal(teacher_student_split(15552, seed=4)[0], t)


@pytest.mark.parametrize("item", ["features", "vgg_features", "genres"])
def test_a_missing_dataset_is_named(fixture_file, tmp_path, item):
    bad = edited_copy(fixture_file, tmp_path / "bad.hdf5", drop=item)
    with pytest.raises(ValueError, match=f"bad.hdf5 has no dataset '{item}'"):
        MMIMDB(bad)


def test_bad_files_and_genres(fixture_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.hdf5 does not exist"):
        MMIMDB(tmp_path / "missing.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(ValueError, match="text.hdf5 is not a readable HDF5 file"):
        MMIMDB(tmp_path / "text.hdf5")
    with pytest.raises(ValueError, match=r"genre\(s\) \['Telenovela'\] not in target_names"):
        MMIMDB(fixture_file, genres=["Drama", "Telenovela"])
    with h5py.File(edited_copy(fixture_file, tmp_path / "names.hdf5"), "a") as f: del f["genres"].attrs["target_names"]
    with pytest.raises(ValueError, match="names.hdf5: dataset 'genres' has no attribute 'target_names'"):
        MMIMDB(tmp_path / "names.hdf5")


def test_split_ranges_beyond_the_file(fixture_file, tmp_path):
    beyond = fuel_split_array({"train": 64, "dev": 32, "test": 100}, ["genres"])
    with pytest.raises(ValueError, match=r"split 'test' = rows \[96, 196\) from the file's 'split' attribute is beyond the file's 144 rows"):
        MMIMDB(edited_copy(fixture_file, tmp_path / "beyond.hdf5", attrs={"split": beyond}))
    with pytest.raises(ValueError, match=r"split 'train' = rows \[0, 15552\) from MultiBench's fixed ranges"):
        MMIMDB(edited_copy(fixture_file, tmp_path / "nosplit.hdf5", drop_attr="split"))


def test_split_attribute_and_multibench_ranges_must_agree_on_a_release_sized_file(tmp_path):
    agree = release_sized(tmp_path / "agree.hdf5", {"train": 15552, "dev": 2608, "test": 7799})
    assert (MMIMDB(agree, "val").start, MMIMDB(agree, "val").stop) == MULTIBENCH_SPLIT["val"]
    assert len(MMIMDB(release_sized(tmp_path / "none.hdf5", None), "test")) == 7799
    with pytest.raises(ValueError, match="disagrees with MultiBench's ranges"):
        MMIMDB(release_sized(tmp_path / "differ.hdf5", {"train": 15000, "dev": 3160, "test": 7799}))


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(genres="Drama"), TypeError, "genres must be a non-empty list"),
    (dict(epochs=0), ValueError, "epochs must be positive"),
    (dict(lr_fusion=-1.0), ValueError, "lr_fusion must be positive"),
    (dict(rho=1.5), ValueError, "rho must be"),
    (dict(ratio=1.0), ValueError, "ratio must be in"),
    (dict(um_teacher="audio"), ValueError, "um_teacher must be one of"),
    (dict(pseudo_rows="all"), ValueError, "pseudo_rows must be one of"),
    (dict(alg1_channels="both"), ValueError, "alg1_channels must be one of"),
    (dict(num_workers=-1), ValueError, "num_workers must be >= 0"),
])
def test_bad_parameters(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        Table7Config(**kwargs)


def test_data_dir_is_a_folder_or_the_file(fixture_file, tmp_path):
    assert table7_file(fixture_file.parent) == table7_file(fixture_file) == fixture_file
    with pytest.raises(FileNotFoundError, match="no multimodal_imdb.hdf5 there"):
        table7_file(tmp_path)


@pytest.mark.parametrize("options,nullified", [
    (dict(alg1_channels="text", um_teacher="text", pseudo_labels="soft"), "image"),
    (dict(alg1_channels="image", pseudo_rows="teacher"), "text"),
])
def test_options_run_and_the_surgery_stays_on_its_path(fixture_file, options, nullified):
    cfg = Table7Config(epochs=1, M=2, batch_size=16, device="cpu", **options)
    runs, alg1 = run_table7(fixture_file, cfg, 1)
    assert runs.method.tolist() == ["No-KD", "UM-KD", "Modality-specific-KD", "Regular-KD", "Modality-general-KD"]
    assert runs.set_index("method").loc["UM-KD", "teacher_modality"] == ("T" if options.get("um_teacher") == "text" else "I")
    general = runs.set_index("method").loc["Modality-general-KD"]
    assert general[f"nullified_{nullified}"] == 0 and general.filter(like="nullified").sum() == 256
    assert alg1[0]["salience"].shape == (1024,)
    assert runs.filter(like="_f1_").melt().value.dropna().between(0, 100).all()


def test_notebook_runs_under_papermill(fixture_file, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "28_mmimdb.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "data_dir", str(fixture_file.parent), "-p", "epochs", "1", "-p", "M", "2", "-p", "batch_size", "16",
           "-p", "device", "cpu", "-p", "out_dir", str(out), "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["epochs"] == 1 and res["params"]["data_dir"] == str(fixture_file.parent)
    assert len(res["vs_paper"]) == 12 and {r["unit"] for r in res["vs_paper"]} == {"%"}
    paper = {r["quantity"]: r["paper"] for r in res["vs_paper"]}
    assert paper["Table 7: Regular-KD student, macro F1"] == PAPER["Regular-KD"]["student_f1_macro"] == 63.31
    assert [r["method"] for r in res["summary"]] == ["No-KD", "UM-KD", "Modality-specific-KD", "Regular-KD", "Modality-general-KD"]
    for fig in res["figures"]:
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"


def test_notebook_rejects_a_bad_parameter_before_any_work(tmp_path):
    assert_refused_before_any_work("28_mmimdb.ipynb", tmp_path, {"pseudo_labels": "fuzzy"}, "pseudo_labels must be one of")
