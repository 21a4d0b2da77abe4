"""NYU Depth V2: the three layouts on the fixture, bad input, the networks' mechanics, and the experiment notebook
under papermill with tiny parameters."""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image

from mfh_nb.data.nyud import (IGNORE_INDEX, LAYOUTS, MAT_FILES, NYUDepthV2, read_list, to_tv_sample, train_transform,
                              write_fixture)
from mfh_nb.experiments.nyud import check_nyud_params
from mfh_nb.models.nyud import CENDeepLab, CENSupervised, DeepLabV3Plus, Omnivore, SAGateDeepLab

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixture_roots(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("nyud"), n_train=4, n_test=3, seed=1)


def test_layouts_agree(fixture_roots):
    sets = {name: NYUDepthV2(root, "train") for name, root in fixture_roots.items()}
    assert {n: ds.layout for n, ds in sets.items()} == {n: n for n in LAYOUTS}
    for i in range(4):
        mat, sag, esa = (ds.read(i) for ds in sets.values())
        np.testing.assert_array_equal(mat[2], sag[2])
        np.testing.assert_array_equal(mat[2], esa[2])
        np.testing.assert_array_equal(mat[1], sag[1])
        np.testing.assert_allclose(mat[1], esa[1], atol=5.01e-4)
        np.testing.assert_array_equal(mat[0], esa[0])
    item = sets["sagate"][0]
    assert item["rgb"].shape == (3, 60, 80) and item["depth"].shape == (1, 60, 80) and item["y"].dtype == torch.int64
    assert NYUDepthV2(fixture_roots["sagate"], "test", depth="hha")[0]["depth"].shape == (3, 60, 80)


def test_labels_are_classes_minus_one_with_void_ignored(fixture_roots):
    ds = NYUDepthV2(fixture_roots["esanet"], "test")
    raw, y = ds.read(0)[2], ds[0]["y"].numpy()
    assert (y[raw == 0] == IGNORE_INDEX).all() and (y[raw > 0] == raw[raw > 0].astype(int) - 1).all()


def test_augmentation_is_shared_by_all_modalities():
    rgb = np.zeros((16, 20, 3), np.uint8); rgb[:, :10] = 255
    depth = np.tile(np.linspace(1, 5, 20, dtype=np.float32), (16, 1))
    label = np.where(np.arange(20) < 10, 1, 2).astype(np.uint8)[None].repeat(16, 0)
    torch.manual_seed(3)
    tf = train_transform(crop=(12, 16), scales=(0.6, 1.6))
    flips = set()
    for _ in range(30):
        s = tf(to_tv_sample(rgb, depth, label, "toy"))
        y, white, d = s["y"], s["rgb"][0] > 127, s["depth"][0]
        inner = torch.zeros_like(y, dtype=torch.bool)
        inner[:, 1:-1] = (y[:, 1:-1] == y[:, :-2]) & (y[:, 1:-1] == y[:, 2:])
        assert white[inner & (y == 0)].all() and not white[inner & (y == 1)].any()
        pad = y == IGNORE_INDEX
        assert (s["rgb"][:, pad] == 0).all() and (d[pad] == 0).all()
        wall, floor = inner & (y == 0), inner & (y == 1)
        if wall.any() and floor.any():
            assert d[wall].max() < d[floor].min()                                   # depth moved with the label
            col = torch.arange(y.shape[1]).expand_as(y)
            flips.add(bool(col[wall].float().mean() > col[floor].float().mean()))  # wall on the right: mirrored
    assert {True, False} <= flips, "the mirror never (or always) fired"


def corrupt(root: Path, layout: str, what: str) -> str:
    "Break one thing in a copy of the fixture; returns the words the error must contain."
    if layout == "esanet":
        first = read_list(root / "test.txt")[0][0]
        if what == "bit depth":
            Image.fromarray(np.zeros((60, 80), np.uint8)).save(root / "test" / "depth" / f"{first}.png")
            return f"{first}.png: expected a 16-bit depth PNG"
        Image.fromarray(np.full((60, 80), 41, np.uint8)).save(root / "test" / "labels_40" / f"{first}.png")
        return "label value 41 is outside 0..40"
    if layout == "sagate":
        i = Path(read_list(root / "test.txt")[0][1]).stem
        if what == "size":
            np.save(root / "Depth" / f"{i}.npy", np.zeros((56, 80), np.float32))
            return "RGB, depth and label differ in size"
        np.save(root / "Depth" / f"{i}.npy", np.zeros((60, 80, 2), np.float32))
        return "expected a (H, W) float array"
    with h5py.File(root / MAT_FILES["labeled"], "r+") as f:
        idx = scipy.io.loadmat(root / MAT_FILES["splits"])["testNdxs"].ravel()[0] - 1
        f["labels"][idx, 0, 0] = 900
    return "label value 900 is outside 0..894"


@pytest.mark.parametrize("layout,what", [("esanet", "bit depth"), ("esanet", "label"), ("sagate", "size"),
                                         ("sagate", "npy shape"), ("mat", "raw label")])
def test_bad_files_name_the_file(tmp_path, layout, what):
    root = write_fixture(tmp_path, n_train=4, n_test=2, layouts=(layout,))[layout]
    words = corrupt(root, layout, what)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        NYUDepthV2(root, "test")[0]


def test_bad_splits_lists_and_files(tmp_path):
    roots = write_fixture(tmp_path, n_train=4, n_test=2)
    scipy.io.savemat(roots["mat"] / "splits.mat", {"trainNdxs": np.array([[1], [9]]), "testNdxs": np.array([[2]])})
    with pytest.raises(ValueError, match="trainNdxs holds index 9, but nyu_depth_v2_labeled.mat has 6 images"):
        NYUDepthV2(roots["mat"], "train")
    (roots["mat"] / MAT_FILES["mapping"]).unlink()
    with pytest.raises(FileNotFoundError, match="classMapping40.mat does not exist"):
        NYUDepthV2(roots["mat"], "test")
    (roots["sagate"] / "train.txt").write_text("RGB/0.jpg\n")
    with pytest.raises(ValueError, match="train.txt, line 1: expected"):
        NYUDepthV2(roots["sagate"], "train")
    i = read_list(roots["esanet"] / "test.txt")[0][0]
    (roots["esanet"] / "test" / "rgb" / f"{i}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{i}.png does not exist"):
        NYUDepthV2(roots["esanet"], "test")
    with pytest.raises(ValueError, match="depth='hha' needs SA-Gate's layout"):
        NYUDepthV2(roots["esanet"], "train", depth="hha")
    for kw, words in ((dict(split="val"), "split must be one of"), (dict(layout="cen"), "layout must be one of")):
        with pytest.raises(ValueError, match=words):
            NYUDepthV2(roots["sagate"], **kw)
    with pytest.raises(FileNotFoundError, match="holds none of the NYU Depth V2 layouts"):
        NYUDepthV2(tmp_path)


def test_omnivore_objective_trains_one_network_on_both_modalities():
    torch.manual_seed(0)
    net = DeepLabV3Plus(40, 3, 14, 8)
    batch = {"rgb": torch.randn(2, 3, 32, 32), "depth": torch.randn(2, 1, 32, 32), "y": torch.randint(0, 40, (2, 32, 32))}
    obj = Omnivore(net)
    net.train()
    torch.manual_seed(1); loss = obj.loss(net, batch)
    torch.manual_seed(1)
    both = net(torch.cat([batch["rgb"], batch["depth"].expand(-1, 3, -1, -1)]))
    expected = (F.cross_entropy(both[:2], batch["y"]) + F.cross_entropy(both[2:], batch["y"])) / 2
    assert loss.shape == () and torch.allclose(loss, expected, atol=1e-5)
    assert obj.output_keys() == ("depth",)
    net.eval()
    assert torch.equal(obj.outputs(net, batch), net(batch["depth"]))


def test_cen_loss_and_penalty():
    torch.manual_seed(0)
    cen = CENDeepLab(40, 14, 8)
    batch = {"rgb": torch.randn(2, 3, 32, 32), "depth": torch.randn(2, 1, 32, 32), "y": torch.randint(0, 40, (2, 32, 32))}
    cen.eval()
    with torch.no_grad():
        ens, streams = cen(batch["rgb"], batch["depth"], streams=True)
        w = cen.alpha.softmax(0)
        assert torch.allclose(ens, w[0] * streams[0] + w[1] * streams[1])
        plain, pen = CENSupervised(cen, lam=0.0).loss(cen, batch), CENSupervised(cen, lam=1.0).loss(cen, batch)
    assert torch.isclose(pen - plain, cen.sparsity(), rtol=1e-4)
    with torch.no_grad():
        for bn in cen.exchanging: bn.bns[1].weight.zero_()
    assert cen.exchanged() == sum(len(bn.bns[1].weight) for bn in cen.exchanging)


def test_sagate_uses_both_modalities():
    torch.manual_seed(0)
    sag = SAGateDeepLab(40, 1, 14, 8).eval()
    rgb, depth = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = sag(rgb, depth)
        assert not torch.allclose(out, sag(rgb, depth + 1)) and not torch.allclose(out, sag(rgb + 1, depth))


GOOD = dict(data_dir=None, layout="auto", depth_input="metres", tables=[3, 6], n_runs=1, epochs=1, batch_size=2,
            crop=[48, 64], scales=[0.75, 1.25], depth=14, width=8, imagenet=False, optimizer="adam", lr=0.01,
            weight_decay=0.0, rho=0.5, cen_lambda=2e-4, cen_threshold=2e-2, M=2, ratio=0.5, alg1_images=4,
            alg1_scale=1.0, fixture_images=[4, 2], num_workers=0)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(tables=[4]), ValueError, "tables must be"), (dict(crop=[50, 64]), ValueError, "multiples of 4"),
    (dict(crop=48), TypeError, "crop must be a list"), (dict(batch_size=1), ValueError, "batch_size must be >= 2"),
    (dict(depth=34), ValueError, "depth must be one of"), (dict(imagenet=True), ValueError, "imagenet=True needs"),
    (dict(rho=2), ValueError, "rho"), (dict(ratio=1.0), ValueError, "ratio"), (dict(optimizer="lbfgs"), ValueError, "optimizer"),
    (dict(data_dir="/no/such/folder"), FileNotFoundError, "data_dir"), (dict(n_runs=0), ValueError, "n_runs"),
])
def test_bad_parameters(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        check_nyud_params(**{**GOOD, **kwargs})


def test_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "25_nyud.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "epochs", "1", "-p", "batch_size", "2", "-p", "M", "2", "-p", "alg1_images", "4",
           "-y", "{fixture_images: [4, 2], crop: [32, 48]}", "-p", "out_dir", str(out), "-p", "device", "cpu", "-p", "assert_fixture", "False",
           "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["epochs"] == 1 and res["params"]["fixture_images"] == [4, 2]
    assert {r["setting"] for r in res["table3"]} >= {"No-KD", "Regular-KD", "Modality-general-KD (Omnivore-style)"}
    assert {r["architecture"] for r in res["table6"]} == {"CEN", "SA-Gate"}
    quantities = {r["quantity"] for r in res["vs_paper"]}
    assert "Table 3: Modality-general-KD (Omnivore-style) student" in quantities and len(quantities) == 5 + 2 * 5
    run = res["table3_runs"][0]
    assert all(0 <= run[k] <= 100 for k in ("regular_teacher", "mg_teacher", "no_kd", "regular_kd", "mg_kd", "nullified_kd"))
    assert res["table6_runs"][0]["no_kd"] == run["no_kd"]             # Table 6 reuses Table 3's no-KD student
    assert len(res["salience"]) == 32 and max(res["salience"]) == pytest.approx(1.0)
    assert {r["network"] for r in res["by_cue"]} >= {"regular_teacher", "mg_teacher", "sagate_kd"}
    assert {r["table"] for r in res["per_class_iou"]} == {"3", "6"}
    for fig in res["figures"]:
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"
