"""A shared check for the experiment notebooks: a bad parameter under papermill fails before any work."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assert_refused_before_any_work(notebook: str, tmp_path: Path, params: dict, message: str) -> None:
    "Run nbs/`notebook` under papermill with `params`: it must fail with `message` and write no out_dir."
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / notebook), str(tmp_path / "executed.ipynb"), "--log-level", "ERROR"]
    for name, value in {**params, "out_dir": str(tmp_path / "out")}.items(): cmd += ["-p", name, str(value)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and message in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()
