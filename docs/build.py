"""Build the documentation site offline from the executed notebooks, and check it in a browser.

Run from the project root:
    python docs/build.py            # all three steps below
    python docs/build.py notebooks  # run every notebook once as nbdev_test does (--flags, --path, --file_glob,
                                    # --n_workers as nbdev_test's); keep them executed in _build/nbs
    python docs/build.py html       # nbdev's doc processors, then Sphinx + myst-nb: the site in _docs/
    python docs/build.py check      # every page in headless Chromium; screenshots in _build/screenshots/
"""
import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
MATHJAX = "mathjax@3.2.2"  # MathJax 4 fetches its fonts from a CDN; 3 serves them from its own folder
MATHJAX_PARTS = ["es5/tex-chtml.js", "es5/output/chtml/fonts", "es5/input/tex/extensions", "es5/ui", "es5/a11y",
                 "LICENSE"]


def mathjax(cache: Path) -> Path:
    "A folder holding `mathjax/` (tex-chtml with its fonts and extensions), unpacked once from the npm registry"
    dest = cache / MATHJAX.replace("@", "-")
    if (dest / "mathjax" / "tex-chtml.js").exists(): return dest
    if not shutil.which("npm"): raise FileNotFoundError("npm is needed once to fetch MathJax 3 (apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", MATHJAX, "--silent", "--pack-destination", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        with tarfile.open(next(Path(tmp).glob("*.tgz"))) as tar: tar.extractall(tmp, filter="data")
        staging = Path(tmp) / "mathjax"
        for part in MATHJAX_PARTS:
            src, to = Path(tmp) / "package" / part, staging / part.removeprefix("es5/")
            if src.is_dir(): shutil.copytree(src, to)
            else: to.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, to)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.move(staging, dest / "mathjax")
    return dest


def experiment_page() -> str | None:
    "The page of the first notebook with a `parameters` cell, experiments (2x_) first, for the screenshot"
    import nbformat
    from execute import notebooks
    for fn in sorted(notebooks(), key=lambda f: (not f.name.startswith("2"), f.name)):
        cells = nbformat.read(fn, as_version=4).cells
        if any("parameters" in c.metadata.get("tags", []) for c in cells): return fn.stem + ".html"
    return None


def html(build: Path, site: Path, jobs: int) -> int:
    "Prepare the Sphinx sources from the executed notebooks and build the site into `site`"
    from prepare import prepare
    from sphinx.cmd.build import build_main
    start, build = time.time(), build.absolute()
    src = build / "src"
    static = mathjax(build)
    names = prepare(build / "nbs", src)
    shutil.rmtree(site, ignore_errors=True)  # no page of a renamed notebook left behind; doctrees stay cached
    print(f"prepared {len(names)} notebooks in {time.time() - start:.1f} s")
    rc = build_main(["-b", "html", "-c", str(DOCS), "-d", str(build / "doctrees"), "-W", "--keep-going", "-q",
                     "-j", str(jobs), "-D", f"html_static_path={DOCS / '_static'},{static}", str(src), str(site)])
    print(f"html: {site}/index.html in {time.time() - start:.1f} s" if rc == 0 else "html: Sphinx failed")
    return rc


def check(build: Path, site: Path) -> int:
    "Load every page in headless Chromium; screenshots of the index and of one experiment page"
    from browser_check import main
    shots = {build / "screenshots" / "index.png": "index.html"}
    exp = experiment_page()
    if exp: shots[build / "screenshots" / "experiment.png"] = exp
    return main(site, shots)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", nargs="?", default="all", choices=["all", "notebooks", "html", "check"])
    p.add_argument("--build", type=Path, default=Path("_build"), help="executed notebooks, sources, screenshots")
    p.add_argument("--site", type=Path, default=None, help="the HTML site (default: doc_path of settings.ini)")
    p.add_argument("--path", default=None, help="a notebook or folder to run (default: nbs_path), as nbdev_test")
    p.add_argument("--file_glob", default="*.ipynb", help="only notebooks matching this glob, as nbdev_test")
    p.add_argument("--flags", default="", help="test flags to run that are normally skipped, as nbdev_test")
    p.add_argument("--n_workers", type=int, default=2, help="notebooks run at once")
    p.add_argument("--jobs", type=int, default=2, help="Sphinx processes")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    from nbdev.config import get_config
    args, cfg = parse(argv), get_config()
    sys.path.insert(0, str(cfg.config_path))  # the package being documented, from this tree
    site = args.site or cfg.doc_path
    if args.step in ("all", "notebooks"):
        from execute import main as run_notebooks
        if run_notebooks(args.build / "nbs", args.path, args.file_glob, args.flags, args.n_workers): return 1
    if args.step in ("all", "html") and html(args.build, site, args.jobs): return 1
    if args.step in ("all", "check") and check(args.build, site): return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
