"""Run every notebook once, exactly as `nbdev_test` does, and keep the executed notebooks for the docs.

`nbdev_test` decides which cells run (the `tst_flags` of settings.ini, `--flags` to force some, `#| eval: false`,
`nbdev_export()` cells, a `skip_exec` front matter) inside `nbdev.test.test_nb`, which runs the notebook in an
execnb `CaptureShell`. We call that same function, and only swap in a shell that also remembers the cells it ran,
so that the outputs can be written back into the original notebook (cells matched by id). Cells that were skipped
keep their code and whatever outputs were committed with them.
"""
import json
import os
import resource
import sys
import time
from pathlib import Path

import nbdev.test
import nbformat
from execnb.shell import CaptureShell
from fastcore.parallel import parallel
from nbdev.config import get_config
from nbdev.doclinks import nbglob


class KeepingShell(CaptureShell):
    "The shell `nbdev.test.test_nb` runs a notebook in, keeping the processed cells it ran (with their outputs)"
    last = None  # the most recent shell made in this process

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nb, self._cell_idx = None, None
        KeepingShell.last = self

    def run_all(self, nb, **kwargs):
        self.nb = nb  # kept before running, so a failing notebook still has its outputs up to the failure
        super().run_all(nb, **kwargs)

    def cell(self, cell, **kwargs):
        cell['outputs'] = []  # a cell that runs shows only what this run printed, never a committed output
        return super().cell(cell, **kwargs)


def notebooks(path: str | None = None,  # a notebook or a folder; nbs_path if None (as nbdev_test's --path)
              file_glob: str = '*.ipynb',  # only names matching this glob (as nbdev_test's --file_glob)
              ) -> list[Path]:
    "The notebooks `nbdev_test` would test, index first, then by name"
    found = nbglob(path, as_path=True, file_glob=file_glob)
    files = [f.absolute() for f in found if nbdev.test._keep_file(f, '.notest')]
    return sorted(files, key=lambda f: (f.stem != 'index', f.name))


def with_outputs(fn: Path,  # the source notebook
                 cells: list | None,  # the processed cells the shell ran (None: the notebook was not executed)
                 ) -> nbformat.NotebookNode:
    "The notebook at `fn` with the outputs of the cells that ran, matched by cell id"
    nb = nbformat.read(fn, as_version=4)
    ran = {c['id']: c for c in cells or [] if c.get('cell_type') == 'code' and 'outputs' in c}
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == 'code'):
        if cell.id not in ran: continue
        cell.outputs = [nbformat.from_dict(json.loads(json.dumps(o))) for o in ran[cell.id]['outputs']]
        cell.execution_count = i + 1
    return nb


def failed_cell(shell: KeepingShell) -> str:
    "Name the cell `shell` stopped at: its number, id and first line"
    idx = shell._cell_idx
    cell = next((c for c in shell.nb.cells if c.get('idx_') == idx - 1), None) if shell.nb and idx else None
    if cell is None: return 'before the first cell'
    return f"cell #{shell._cell_idx} (id {cell.get('id')}): {cell.source.strip().splitlines()[0][:80]!r}"


def run_notebook(fn: Path,  # the notebook to run
                 out_dir: Path,  # where the executed notebook is written, under the same name
                 skip_flags: list,  # flags marking cells to skip (settings.ini `tst_flags`)
                 force_flags: list,  # flags to run even if listed in `skip_flags`
                 basepath: Path,  # the project root, put on sys.path as nbdev_test does
                 ) -> tuple[bool, float, str]:
    "Run `fn` with nbdev's own `test_nb`, write it with its outputs into `out_dir`; (passed, wall s, CPU s, failure)"
    nbdev.test.CaptureShell = KeepingShell  # test_nb builds its shell from this module-level name
    KeepingShell.last, cpu = None, cpu_seconds()
    passed, secs = nbdev.test.test_nb(fn, skip_flags=skip_flags, force_flags=force_flags, basepath=basepath)
    shell, cpu = KeepingShell.last, cpu_seconds() - cpu
    nbformat.write(with_outputs(fn, shell.nb.cells if shell and shell.nb else None), out_dir / fn.name)
    if not passed: return passed, secs, cpu, f"{fn.name}: {failed_cell(shell) if shell else 'did not start'}"
    leak = leaked_state()
    return not leak, secs, cpu, f"{fn.name}: {leak}" if leak else ''


def leaked_state() -> str:
    "What a notebook left switched in this process that would change the next notebook run in it (restored), or ''"
    torch = sys.modules.get('torch')
    if torch is None or torch.is_grad_enabled(): return ''
    torch.set_grad_enabled(True)
    return 'left autograd disabled for the notebooks after it (use `with torch.no_grad():`)'


def cpu_seconds() -> float:
    "CPU time (user + system) this process and its reaped children have used"
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def execute(out_dir: Path,  # where the executed notebooks go
            path: str | None = None,  # a notebook or a folder; nbs_path if None
            file_glob: str = '*.ipynb',  # only names matching this glob
            flags: str = '',  # space-separated test flags to run that are normally skipped (as nbdev_test)
            n_workers: int = 2,  # notebooks run at once, one process each
            ) -> list[str]:
    "Run the notebooks once, as `nbdev_test` would, saving them executed into `out_dir`; the failures"
    cfg, files = get_config(), notebooks(path, file_glob)
    if not files: raise FileNotFoundError(f"no notebook matches path={path!r}, file_glob={file_glob!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    # the last notebooks (experiments) are the longest: starting them first keeps both workers busy to the end
    res = parallel(run_notebook, files[::-1], out_dir=out_dir.absolute(), skip_flags=cfg.tst_flags.split(),
                   force_flags=flags.split(), basepath=cfg.config_path, n_workers=n_workers, pause=0.01)
    for fn, (passed, secs, cpu, _) in sorted(zip(files[::-1], res), key=lambda o: -o[1][1]):
        print(f"{'ok    ' if passed else 'FAILED'} {secs:6.1f} s wall {cpu:6.1f} s CPU  {fn.name}")
    print(f"{len(files)} notebooks in {time.time() - start:.0f} s with {n_workers} workers")
    return [failure for passed, *_, failure in res if not passed]


def main(out_dir: Path, path: str | None, file_glob: str, flags: str, n_workers: int) -> int:
    "The `notebooks` step of docs/build.py: exit status 1 and the failing notebooks and cells on any failure"
    os.environ.setdefault('OMP_NUM_THREADS', '1')  # two torch processes with several threads each crawl on 2 cores
    os.environ.setdefault('MKL_NUM_THREADS', '1')
    failures = execute(out_dir, path, file_glob, flags, n_workers)
    for f in failures: sys.stderr.write(f"FAILED {f}\n")
    return 1 if failures else 0
