"""VGGSound: the reference layout's bad input, raw clips and wav files, the networks, and the experiment notebook under
papermill with tiny parameters."""
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from scipy.io import wavfile

from mfh_nb.data.vggsound import (N_FFT, SAMPLE_RATE, VGGSound, magnitude_stft, read_clip, read_labels, read_wav,
                                  spectrogram, write_fixture)
from mfh_nb.experiments.vggsound import check_params, parse_row, resolve_config, source_share
from mfh_nb.models.vggsound import audio_resnet, video_resnet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fixture(tmp_path):
    write_fixture(tmp_path, n_train=4, n_test=2, n_frames=4, frame_size=16, seconds=0.5)
    return tmp_path


def test_fixture_reads_back_with_labels_from_names(fixture):
    ds = VGGSound(fixture / "Train", fixture / "label.json", n_frames=4, spec_frames=None)
    info = json.loads((fixture / "fixture.json").read_text())
    assert len(ds) == 4 and ds[0]["video"].shape == (3, 4, 16, 16) and ds[0]["audio"].shape == (1, 513, 16)
    for c in ds.clips:
        bits = info["clips"][f"Train/{c.stem}"]["x"]
        assert c.label == int("".join("1" if b > 0 else "0" for b in bits), 2)   # class k = the sign pattern of k
    test = VGGSound(fixture / "Test", fixture / "label.json", n_frames=4, spec_frames=None)
    assert test.clips[0].audio.suffix == ".wav" and test[0]["audio"].shape == (1, 513, 16)


def test_jpeg_of_the_wrong_height(fixture):
    ds = VGGSound(fixture / "Train", fixture / "label.json", n_frames=32)
    with pytest.raises(ValueError, match=r"32 stacked square frames must be 32 x its width high; got 64x16"):
        ds[0]
    (fixture / "Train" / "video_jpg" / ds.clips[1].frames.name).write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not a readable JPEG"):
        VGGSound(fixture / "Train", fixture / "label.json", n_frames=4)[1]


@pytest.mark.parametrize("shape", [(8000,), (2, 8000), (1, 1, 8000)])
def test_waveform_of_the_wrong_rank(fixture, shape):
    ds = VGGSound(fixture / "Train", fixture / "label.json", n_frames=4)
    np.save(ds.clips[2].audio, np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=rf"{ds.clips[2].audio.name}: expected a waveform of shape \(1, T\)"):
        ds[2]


def test_missing_audio_and_unknown_class_are_named_when_built(fixture):
    labels = read_labels(fixture / "label.json")
    wav = sorted((fixture / "Test" / "audio").iterdir())[0]
    wav.unlink()
    with pytest.raises(FileNotFoundError, match=f"{wav.name} is missing"):
        VGGSound(fixture / "Test", labels, n_frames=4)
    jpg = sorted((fixture / "Train" / "video_jpg").iterdir())[0]
    with pytest.raises(ValueError, match=f"{jpg.name}: class 'nope' is not in the label JSON"):
        VGGSound(fixture / "Train", labels, label_of=lambda name: "nope")
    (fixture / "bad.json").write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(ValueError, match="indices must be 0..1"):
        read_labels(fixture / "bad.json")


def test_wav_stereo_int16_at_44k_becomes_mono_16k(tmp_path):
    t = np.arange(44100) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 500 * t) * 32767).astype(np.int16)
    wavfile.write(tmp_path / "x.wav", 44100, np.stack([tone, tone], 1))
    w = read_wav(tmp_path / "x.wav")
    assert w.shape == (SAMPLE_RATE,) and abs(w.abs().max().item() - 0.5) < 0.01
    assert spectrogram(w, spec_frames=None)[0].mean(1).argmax().item() == round(500 * N_FFT / SAMPLE_RATE)
    with pytest.raises(ValueError, match="more than 512 samples"):
        magnitude_stft(torch.zeros(512))


def tiny_mp4(path, seconds=2.0, fps=10):
    with av.open(str(path), "w") as box:
        vs, au = box.add_stream("mpeg4", rate=fps), box.add_stream("aac", rate=22050, layout="mono")
        vs.width, vs.height, vs.pix_fmt = 48, 32, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((32, 48, 3), 10 * i, np.uint8)                      # frames get brighter
            box.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        box.mux(vs.encode(None))
        tone = np.sin(2 * np.pi * 1000 * np.arange(int(seconds * 22050)) / 22050).astype(np.float32)[None] * 0.5
        for s in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, s:s + 1024]), format="fltp", layout="mono")
            frame.sample_rate = 22050
            box.mux(au.encode(frame))
        box.mux(au.encode(None))


def test_raw_clip_frames_spread_over_the_clip_and_16k_audio(tmp_path):
    tiny_mp4(tmp_path / "c.mp4")
    frames, wave = read_clip(tmp_path / "c.mp4", n_frames=5, frame_size=16)
    assert frames.shape == (5, 16, 16, 3) and abs(len(wave) / SAMPLE_RATE - 2.0) < 0.1
    brightness = frames.float().mean((1, 2, 3))
    assert (brightness.diff() > 20).all() and brightness[0] < 20 and brightness[-1] > 160   # first to last frame
    assert spectrogram(wave, spec_frames=None)[0, :, 5:-5].mean(1).argmax().item() == 64    # 1 kHz
    with pytest.raises(ValueError, match="fewer than n_frames=32"):
        read_clip(tmp_path / "c.mp4", n_frames=32)
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="bad.mp4: cannot decode"):
        read_clip(tmp_path / "bad.mp4")


def test_networks_block_count_and_feature_sizes():
    count = lambda net: sum(1 for _ in net.layer1)
    assert count(video_resnet(18, 10, width=8)) == 3 and count(video_resnet(18, 10, width=8, blocks=2)) == 2
    assert video_resnet(50, 10, width=8).fc.in_features == 256 and audio_resnet(18, 10, width=8).fc.in_features == 64
    out = audio_resnet(18, 7, width=8, stem_padding=1)(torch.randn(2, 1, 513, 313))
    assert out.shape == (2, 7)


def test_source_share_prefers_the_map_on_the_source():
    sources, silent = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    sources[0, :2, :2], silent[0, 2:, 2:] = 1, 1
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, :2, :2], maps[0, 0, 2:, 2:] = 3.0, 1.0
    assert source_share(maps, sources, silent).item() == pytest.approx(0.75)


PARAMS = dict(device="cpu", seed=0, n_runs=1, data_dir=None, label_json=None, out_dir="x", checkpoint_dir=None,
              table4=["resnet18 audio->video"], rhos=[0.0], ratio="auto", M=2, ratios=[0.5], Ms=[1], cam_ratio=0.5,
              cam_clips=2, fill="mean", distance="l1", amp=True, width="auto", video_blocks="auto", clip_frames="auto",
              frame_size="auto", spec_frames="auto", epochs="auto", batch_size="auto", lr="auto", num_workers="auto",
              n_train=8, n_test=4)


@pytest.mark.parametrize("change,exc,words", [
    (dict(M=0), ValueError, "M must be positive"),
    (dict(Ms=[0]), ValueError, "Ms must be positive"),
    (dict(rhos=[1.5]), ValueError, "rhos must lie in"),
    (dict(ratio=1.0), ValueError, "ratio, ratios and cam_ratio"),
    (dict(distance="cosine"), ValueError, "distance must be one of"),
    (dict(epochs=2.5), TypeError, "epochs must be an int"),
    (dict(table4="resnet18 audio->video"), TypeError, "table4 must be a list"),
])
def test_bad_parameters(change, exc, words):
    with pytest.raises(exc, match=words):
        check_params({**PARAMS, **change})


def test_auto_sizes_follow_the_data():
    assert resolve_config(False, PARAMS).width == 64 and resolve_config(False, PARAMS).video_blocks == 3
    assert resolve_config(True, PARAMS).width == 8 and resolve_config(True, {**PARAMS, "width": 16}).width == 16
    assert parse_row("resnet50 video->audio") == (50, "video")


def test_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "27_vggsound.ipynb"), str(tmp_path / "executed.ipynb"),
           "-p", "device", "cpu", "-p", "epochs", "2", "-p", "n_train", "16", "-p", "n_test", "8", "-p", "M", "2",
           "-p", "cam_clips", "2", "-p", "assert_fixture", "False", "-p", "out_dir", str(out),
           "-y", "{rhos: [0.0, 0.5], ratios: [0.5], Ms: [1]}", "--log-level", "ERROR"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["rhos"] == [0.0, 0.5] and res["config"]["epochs"] == 2 and res["config"]["width"] == 8
    assert {r["kind"] for r in res["table4"]} == {"no-KD", "regular", "specific", "random", "general"}
    assert {(r["rho"], r["kind"]) for r in res["table9"]} == {(p, k) for p in (0.0, 0.5) for k in ("regular", "specific", "random", "general")}
    assert [r["ratio"] for r in res["fig5"]] == [0.0, 0.5, 0.75] and [r["M"] for r in res["fig6"]] == [1, 2]
    assert {r["teacher"] for r in res["cam"]} == {"regular", "general"}
    assert {q["quantity"].split(":")[0] for q in res["vs_paper"]} == {"Table 4", "Table 9"} and len(res["vs_paper"]) == 8
    assert res["fixture_gamma"] == pytest.approx(1 / 3)
    for fig in res["figures"]:
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"
