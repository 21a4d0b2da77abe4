"""The package layout: the three sub-packages import on their own, imports flow one way (experiments -> data, models
-> library), and every module is generated from exactly one notebook."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mfh_nb"
MODULES = sorted(p for p in PKG.rglob("*.py") if p.name not in ("__init__.py", "_modidx.py"))


def layer(module: Path) -> str:
    "'library', 'data', 'models' or 'experiments': where a module of the package sits."
    rel = module.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else "library"


def imported_layers(module: Path) -> set[str]:
    "The layers of mfh_nb that a module imports from (absolute or relative imports)."
    found, package = set(), module.relative_to(PKG).parent.parts
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ("mfh_nb", *package[:len(package) - node.level + 1]) if node.level else ()
            name = ".".join([*base, *([node.module] if node.module else [])])
            names = [name] + [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import): names = [a.name for a in node.names]
        else: continue
        for n in names:
            parts = n.split(".")
            if parts[0] == "mfh_nb" and len(parts) > 1:
                found.add(parts[1] if parts[1] in ("data", "models", "experiments") else "library")
    return found


ALLOWED = {"library": {"library"}, "data": {"library", "data"}, "models": {"library", "models"},
           "experiments": {"library", "data", "models", "experiments"}}


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_flow_one_way(module):
    bad = imported_layers(module) - ALLOWED[layer(module)]
    assert not bad, f"{module.relative_to(PKG)} ({layer(module)}) imports from {sorted(bad)}"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_every_module_comes_from_one_notebook(module):
    sources = set(re.findall(r"^# %% \.\./(?:\.\./)*nbs/(\S+\.ipynb)", module.read_text(), re.M))
    assert len(sources) == 1, f"{module.relative_to(PKG)} is written by {sorted(sources) or 'no notebook'}"


def test_the_subpackages_import_on_a_fresh_interpreter():
    code = "import mfh_nb.experiments, mfh_nb.data, mfh_nb.models, mfh_nb.experiments.synthetic, mfh_nb.models.gauss"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_the_layer_check_sees_a_backward_import(tmp_path):
    bad = PKG / "data" / "_probe_backward.py"
    try:
        bad.write_text("from ..experiments.synthetic import run_sweep\nfrom mfh_nb.models import gauss\n")
        assert imported_layers(bad) == {"experiments", "models"}
    finally: bad.unlink()


EXPERIMENTS = sorted((PKG.parent / "nbs").glob("2*.ipynb"))


@pytest.mark.parametrize("notebook", EXPERIMENTS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(notebook):
    "papermill (and so mfh-run's check of parameter names) reads every name the `parameters` cell assigns."
    import json, papermill
    cell = next(c for c in json.loads(notebook.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    assigned = {t.id for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.Assign) for t in node.targets}
    assert set(papermill.inspect_notebook(str(notebook))) == assigned
