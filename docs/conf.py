"""Sphinx settings for the mfh_nb site, built by docs/build.py from the executed, prepared notebooks."""
from nbdev.config import get_config

_cfg = get_config()  # the settings.ini of the project being built (build.py runs from its root)
project, author, copyright, release = _cfg.title, _cfg.author, _cfg.copyright, _cfg.version

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["**.ipynb_checkpoints"]

nb_execution_mode = "off"  # the notebooks were executed once by `build.py notebooks`; render their outputs
nb_render_markdown_format = "myst"  # markdown outputs may carry math
nb_merge_streams = True
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]  # widgets load a CDN
myst_enable_extensions = ["dollarmath", "amsmath", "attrs_inline", "html_image"]
myst_heading_anchors = 3
myst_dmath_double_inline = True
suppress_warnings = ["myst.header"]  # show_doc headings sit one level below whatever section precedes them

html_theme = "furo"
html_title = f"{project} {release}"
html_static_path = ["_static"]  # build.py adds the folder holding MathJax
html_css_files = ["mfh.css"]
html_copy_source = False  # the notebooks with their images are not copied a second time
html_show_sourcelink = False
html_last_updated_fmt = None

# MathJax 3 served from the site itself (build.py unpacks it from the npm registry's package into _static/mathjax)
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {
    "tex": {"packages": {"[-]": ["noundefined"]}},  # an undefined macro is an error the browser check sees
    "options": {"menuOptions": {"settings": {"assistiveMml": False}}},
}
