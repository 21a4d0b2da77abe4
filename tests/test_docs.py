"""The docs build on a tiny nbdev project: notebooks run as nbdev_test decides, the site builds, the browser check
passes on it and reports each fault injected into a copy (missing PNG, CDN URL, bad macro, broken link and anchor,
script error)."""
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "docs" / "build.py"
sys.path.insert(0, str(ROOT / "docs"))

if not Path("/usr/bin/chromium").exists() and not os.environ.get("CI"):
    pytest.skip("needs Debian's chromium (apt-get install chromium); .ci/run installs it", allow_module_level=True)


def md(src): return nbformat.v4.new_markdown_cell(src)


def code(src, **meta): return nbformat.v4.new_code_cell(src, metadata=meta)


CORE = [
    code("#| default_exp core"),
    md("# Core\n\n> The core module of a tiny project\n\nThe map $x \\mapsto 2x$, and `double` computes it:\n\n"
       "$$\\sum_i (2 x_i)^2 = 4 \\sum_i x_i^2$$"),
    code("n = 3", tags=["parameters"]),
    code("#| export\nfrom __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
         "if TYPE_CHECKING: from fractions import Fraction  # for annotations only"),
    code("#| export\ndef double(x: float,  # the number\n           ) -> float:\n    \"Twice $x$\"\n    return 2 * x"),
    code("#| export\ndef halve(x: int) -> Fraction:  # an annotation naming a type-checking-only import\n"
         "    \"Half of `x`, exactly\"\n    from fractions import Fraction\n    return Fraction(x, 2)"),
    code("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [double(v) for v in [1, 2, 3]]);"),
    code("import pandas as pd\npd.DataFrame({'x': [1, 2], 'double': [2, 4]})"),
    code("#| slow\nraise RuntimeError('the slow cell ran')"),
    code("#| eval: false\nraise RuntimeError('the eval: false cell ran')"),
]
INDEX = [md("# tinylib\n\n> A tiny project\n\nThe [core page](00_core.ipynb) documents `double`, $x \\mapsto 2x$.")]


def write_project(root: Path):
    "An nbdev project `tinylib` with our settings, an index and one library notebook, exported"
    settings = (ROOT / "settings.ini").read_text()
    settings = re.sub(r"^(lib_name|lib_path|repo|title) = .*$", r"\1 = tinylib", settings, flags=re.M)
    (root / "settings.ini").write_text(settings)
    (root / "nbs").mkdir()
    for name, cells in [("index", INDEX), ("00_core", CORE)]:
        nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                            "display_name": "Python 3"}})
        nbformat.write(nb, root / "nbs" / f"{name}.ipynb")
    subprocess.run(["nbdev_export"], cwd=root, check=True)


def build(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BUILD), *args], cwd=root, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "The tiny project, built: its root (site in _docs, executed notebooks and screenshots in _build)"
    root = tmp_path_factory.mktemp("tinylib")
    write_project(root)
    res = build(root)
    assert res.returncode == 0, res.stdout + res.stderr
    return root


def test_site_builds_and_passes_the_check(project):
    site = project / "_docs"
    assert {"index.html", "00_core.html", "api.html", "source/tinylib.core.html"} <= {
        p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    core = (site / "00_core.html").read_text()
    assert 'id="tinylib-core-double"' in core and 'href="source/tinylib.core.html#L-' in core  # show_doc section
    text = html.unescape(re.sub(r"<[^>]+>", "", core))
    assert "def double(\n    x:float, # the number\n)->float:" in text  # signature with docments
    assert "def halve(\n    x:int\n)->Fraction:" in text
    assert "#| export" not in text and "#| slow\nraise RuntimeError" in text  # export cell hidden, skipped code shown
    assert list((site / "_images").glob("*.png")), "the figure was not extracted"
    assert "_static/mathjax/tex-chtml.js" in core and "cdn" not in core.lower()
    for page in ("api.html", "index.html"):  # the API index, and `double` in the prose of the index
        assert 'href="00_core.html#tinylib-core-double"' in (site / page).read_text()
    for shot in ("index.png", "experiment.png"):
        assert (project / "_build" / "screenshots" / shot).read_bytes()[:4] == b"\x89PNG"


def test_each_fault_is_reported(project, tmp_path):
    from browser_check import check_site
    site = tmp_path / "site"
    shutil.copytree(project / "_docs", site)
    png = next((site / "_images").glob("*.png"))
    png.unlink()
    index = site / "index.html"
    index.write_text(index.read_text().replace("_static/mathjax/tex-chtml.js",
                                               "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"))
    core = site / "00_core.html"
    core.write_text(core.read_text().replace(r"\mapsto", r"\notamacro"))
    api = site / "api.html"
    api.write_text(api.read_text().replace("</body>", '<a href="missing.html">x</a><a href="00_core.html#nowhere">'
                                           'y</a><script>no_such_function()</script></body>'))
    problems = "\n".join(check_site(site))
    for expected in [f"00_core.html: image did not load: _images/{png.name}", f"HTTP 404 for _images/{png.name}",
                     "index.html: request to a non-local address: https://cdn.jsdelivr.net/",
                     r"index.html: formula not typeset: \(x \mapsto 2x\)",
                     r"00_core.html: MathJax error: Undefined control sequence \notamacro",
                     "api.html: broken link: missing.html", "api.html: broken anchor: 00_core.html#nowhere",
                     "api.html: page error: no_such_function is not defined"]:
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"


def nbdev_test(root: Path, flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nbdev_test", "--flags", flags], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})


def outputs(path: Path) -> dict:
    "The outputs of the figure, slow and eval: false cells of the executed core notebook"
    cells = nbformat.read(path / "nbs" / "00_core.ipynb", as_version=4).cells
    return {k: next(c.outputs for c in cells if s in c.source) for k, s in
            [("figure", "plt.plot"), ("slow", "#| slow"), ("eval", "#| eval: false")]}


def test_notebooks_step_decides_as_nbdev_test(project, tmp_path):
    out = outputs(project / "_build")  # run with no flags
    assert any(o.get("data", {}).get("image/png") for o in out["figure"])  # the figure, kept for the docs
    assert out["slow"] == [] and out["eval"] == []  # the slow and eval: false cells did not run
    assert nbdev_test(project, "").returncode == 0  # nbdev_test agrees: the notebook passes
    res = build(project, "notebooks", "--build", str(tmp_path), "--flags", "slow")
    assert res.returncode == 1 and nbdev_test(project, "slow").returncode == 1  # both run the slow cell, both fail
    assert "FAILED 00_core.ipynb: cell #" in res.stderr and "the slow cell ran" in res.stderr
    out = outputs(tmp_path)
    assert any(o.output_type == "error" for o in out["slow"]) and out["eval"] == []  # the failure's traceback kept


def test_a_notebook_that_leaves_autograd_off_fails_by_name(project, tmp_path):
    "nbdev_test runs several notebooks per process: one that switches autograd off globally is named, not its victim"
    leaky = nbformat.v4.new_notebook(cells=[code("import torch\ntorch.set_grad_enabled(False)")])
    nbformat.write(leaky, project / "nbs" / "01_leaky.ipynb")
    try: res = build(project, "notebooks", "--build", str(tmp_path), "--file_glob", "01_*", "--n_workers", "1")
    finally: (project / "nbs" / "01_leaky.ipynb").unlink()
    assert res.returncode == 1 and "FAILED 01_leaky.ipynb: left autograd disabled" in res.stderr
