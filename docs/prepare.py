"""Turn the executed notebooks into Sphinx sources that read like nbdev's pages.

nbdev's own processors hide the `#| export` cells and add a `show_doc` cell under each exported function or class.
Each `show_doc` cell becomes a markdown section rendered by fastcore's docments renderer (the one nbdev's `show_doc`
uses) from the object in the installed `mfh_nb` package, with a label named after its full dotted name and a link
to its line in a local source page. Backticked names in prose link to those sections, as nbdev's do.
"""
import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import nbformat
from execnb.nbio import mk_cell, nb2dict, read_nb
from fastcore.docments import MarkdownRenderer
from nbdev.config import get_config
from nbdev.doclinks import NbdevLookup
from nbdev.process import NBProcessor
from nbdev.processors import (add_show_docs, clean_magics, filter_stream_, hide_, hide_line, populate_language,
                              rm_export, rm_header_dash, strip_ansi, strip_hidden_metadata)
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

_re_show_doc = re.compile(r'^show_doc\(\s*([\w.]+)\s*\)\s*$')
_re_code_or_math = re.compile(r'(`[^`]*`|\$[^$]*\$)')
_tags = {'echo': 'remove-input', 'output': 'remove-output', 'include': 'remove-cell'}  # quarto option -> myst-nb tag


def lib_name() -> str: return get_config().lib_name


def source_page(module: str) -> str: return f"source/{module}"


def source_href(obj) -> str:
    "Relative URL of the line where `obj` is defined, on its module's source page"
    line = inspect.getsourcelines(obj)[1]
    return f"{source_page(obj.__module__)}.html#L-{line}"


def export_modules(nb) -> list[str]:
    "The modules the notebook exports to: its `default_exp` first, then any `#| export NAME` targets"
    mods = []
    for cell in nb.cells:
        d = getattr(cell, 'directives_', {}) or {}
        for key in ('default_exp', 'export', 'exports'): mods += d.get(key, [])
    return [f"{lib_name()}.{m}" for m in dict.fromkeys(mods)]


def with_type_checking_names(mod):
    "`mod`, with the names it imports only for type checkers (`if TYPE_CHECKING:`) added, so annotations render"
    for node in ast.parse(inspect.getsource(mod)).body:
        if isinstance(node, ast.If) and getattr(node.test, 'id', None) == 'TYPE_CHECKING':
            names = {}
            exec(compile(ast.Module(node.body, []), mod.__file__, 'exec'), dict(vars(mod)), names)
            for k, v in names.items(): vars(mod).setdefault(k, v)
    return mod


def resolve(name: str, modules: list[str]):
    "The object `name` (e.g. `fit` or `Trainer.fit`) in the first of `modules` that has it, with its full name"
    for mod in modules:
        obj = with_type_checking_names(importlib.import_module(mod))
        for part in name.split('.'): obj = getattr(obj, part, None)
        if obj is not None: return obj, f"{mod}.{name}"
    return None, None


def literal_stars(s: str) -> str:
    "`s` with each `*` outside code spans and math escaped, so a docstring's `a*` cannot end its italics early"
    return ''.join(p if i % 2 else p.replace('*', r'\*') for i, p in enumerate(_re_code_or_math.split(s)))


def doc_markdown(obj, name: str, full: str) -> str:
    "A show_doc section for `obj`: label, heading, local source link, signature with docments, docstring"
    r = MarkdownRenderer(obj, name=name)  # fastcore's docments renderer, as nbdev's show_doc
    first, *rest = (r.docs or '').strip().split('\n', 1)  # the first line in italics, as fastcore's renderer
    doc = f"```python\n{r.dm}\n```" + (f"\n\n*{literal_stars(first)}*" if first else "") + ''.join(f"\n{x}" for x in rest)
    src = f'<a class="sd-source" href="{source_href(obj)}">source</a>'
    return f"({full})=\n### {name}\n\n{src}\n\n{doc}\n"


class ShowDocs:
    "Turn `show_doc(name)` cells into markdown sections for the exported objects; collect their labels"
    def __init__(self, nb, labels: set):  # labels: gets each documented object's full name
        self.nb, self.labels = nb, labels

    def begin(self): self.modules = export_modules(self.nb)  # NBProcessor has parsed the directives by now

    def __call__(self, cell):
        m = _re_show_doc.match(cell.source.strip()) if cell.cell_type == 'code' else None
        obj, full = resolve(m.group(1), self.modules) if m else (None, None)
        if obj is None and cell.get('has_sd'):
            raise ValueError(f"{self.nb.path_}: {m.group(1)} is exported but not found in {self.modules}: nbdev_export?")
        if obj is None: return
        self.labels.add(full)
        cell.update(cell_type='markdown', source=doc_markdown(obj, m.group(1).split('.')[-1], full), metadata={})
        for key in ('outputs', 'execution_count', 'has_sd'): cell.pop(key, None)


def options_to_tags(cell):
    "Quarto-style options left in the source (`#| echo: false`...) become myst-nb tags; skip flags stay visible"
    if cell.cell_type != 'code': return
    d = getattr(cell, 'directives_', {}) or {}
    tags = [_tags[k.rstrip(':')] for k, v in d.items() if k.rstrip(':') in _tags and v[:1] == ['false']]
    if tags: cell.metadata['tags'] = cell.metadata.get('tags', []) + tags
    lines = [l for l in cell.source.splitlines() if not re.match(r'\s*#\|', l)]
    shown = [f"#| {k}" for k in d if k in get_config().tst_flags.split()]  # why the cell has no output
    if d.get('eval:', [''])[0].lower() == 'false': shown.append('#| eval: false')
    cell.source = '\n'.join(shown + lines)


def processed(fn: Path, labels: set):
    "The executed notebook `fn` after nbdev's doc processors and ours"
    nb = read_nb(fn)
    procs = [populate_language, add_show_docs, strip_ansi, hide_line, filter_stream_, rm_header_dash,
             ShowDocs(nb, labels), rm_export, hide_, clean_magics, options_to_tags, strip_hidden_metadata]
    NBProcessor(nb=nb, procs=procs).process()
    return nb


class LocalLookup(NbdevLookup):
    "nbdev's backtick linker, over this project's own symbol index, pointing at the sections' labels"
    def __init__(self, labels: set):  # full names of the documented objects
        self.aliases, self.syms = {}, {}
        for mod, syms in importlib.import_module(f"{lib_name()}._modidx").d['syms'].items():
            for full in syms:
                qual = full.removeprefix(mod + '.')
                for name in (qual, f"{mod.rsplit('.', 1)[-1]}.{qual}", full): self.syms[name] = full
        self.labels = labels

    def doc(self, sym):
        full = self[sym]
        return f"#{full}" if full in self.labels else None


def as_notebook(nb) -> nbformat.NotebookNode:
    "A valid nbformat notebook from execnb's processed one"
    d = nb2dict(nb)
    for c in d['cells']: c.pop('has_sd', None)
    res = nbformat.from_dict(d)
    nbformat.validate(res)
    return res


def toctree(docs: list[str]) -> str:
    "A hidden MyST toctree of `docs`: the sidebar's entries, in this order"
    return "```{toctree}\n:hidden:\n:maxdepth: 1\n\n" + "\n".join(docs) + "\n```\n"


def public_modules() -> list:
    "Every module of the package with public names (`__all__`), in name order"
    pkg = importlib.import_module(lib_name())
    names = sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'))
    return [mod for mod in map(importlib.import_module, names) if getattr(mod, '__all__', None)]


def assigned_line(path: Path, name: str) -> int | None:
    "The line of the top-level assignment, def or class that binds `name` in the file at `path`"
    for node in ast.parse(path.read_text(encoding='utf-8')).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, 'target', None)]
        names = [getattr(t, 'id', None) for t in targets] + [getattr(node, 'name', None)]
        if name in names: return node.lineno
    return None


def api_entry(mod, name: str, labels: set) -> str:
    "One line of the API page: a link to the name's section, or to its source line if it has none"
    full = f"{mod.__name__}.{name}"
    if full in labels:
        summary = (getattr(getattr(mod, name), '__doc__', '') or '').strip().splitlines()[:1]
        return f"- [`{name}`](#{full}) {summary[0] if summary else ''}"
    line = assigned_line(Path(mod.__file__), name)
    return f'- `{name}` <a href="{source_page(mod.__name__)}.html{f"#L-{line}" if line else ""}">source</a>'


def api_page(labels: set) -> str:
    "The API reference: every public name of every module, linked to its docs"
    out = ["# API reference\n", "Every public name of the package, by module; each links to its documentation "
           "in the notebook that defines it, or to its source.\n"]
    for mod in public_modules():
        out.append(f"## `{mod.__name__}`\n\n{(mod.__doc__ or '').strip()} "
                   f'<a href="{source_page(mod.__name__)}.html">source</a>\n')
        out += [api_entry(mod, n, labels) for n in mod.__all__] + [""]
    out.append(toctree([source_page(m.__name__) for m in public_modules()]))
    return "\n".join(out)


def source_markdown(mod) -> str:
    "A page with the module's source, each line anchored as `L-<n>`"
    path = Path(mod.__file__)
    fmt = HtmlFormatter(cssclass='highlight', lineanchors='L', linenos='inline', anchorlinenos=True, wrapcode=True)
    code = highlight(path.read_text(encoding='utf-8'), PythonLexer(), fmt)
    rel = path.relative_to(Path(get_config().config_path)).as_posix()
    return f"# `{rel}`\n\n````{{raw}} html\n<div class=\"highlight-python notranslate\">{code}</div>\n````\n"


def write_if_changed(path: Path, text: str) -> Path:
    "Write `text` to `path` unless it already holds it, so Sphinx rebuilds only the pages that changed"
    if not path.exists() or path.read_text(encoding='utf-8') != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding='utf-8')
    return path


def prepare(executed: Path, src: Path) -> list[str]:
    "Sphinx sources in `src` from the executed notebooks in `executed`: pages, API reference, source pages; the pages"
    from execute import notebooks
    sources = notebooks()
    stale = [f.name for f in sources if not (executed / f.name).exists()
             or (executed / f.name).stat().st_mtime < f.stat().st_mtime]
    if stale: raise FileNotFoundError(f"not executed since last changed (run `docs/build.py notebooks`): {stale}")
    names = [f.name for f in sources]
    labels = set()
    nbs = {n: processed(executed / n, labels) for n in names}
    lookup = LocalLookup(labels)
    written = []
    for n, nb in nbs.items():
        for cell in nb.cells:
            if cell.cell_type == 'markdown': cell.source = lookup.linkify(cell.source)
        if n == 'index.ipynb':
            pages = [Path(o).stem for o in names if o != n] + ['api']
            nb.cells.append(mk_cell(toctree(pages), 'markdown'))
        written.append(write_if_changed(src / n, nbformat.writes(as_notebook(nb)) + '\n'))
    written.append(write_if_changed(src / 'api.md', api_page(labels)))
    written += [write_if_changed(src / f"{source_page(m.__name__)}.md", source_markdown(m)) for m in public_modules()]
    for old in (set(src.rglob('*.ipynb')) | set(src.rglob('*.md'))) - set(written): old.unlink()  # gone notebooks
    return names
