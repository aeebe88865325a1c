"""Sphinx configuration: `./dev docs` builds the site into docs/_build/html with warnings as errors.

The API reference (docs/api/) is generated here from the package itself, one page per public module, so a new
module has a page without anyone writing one; tutorials are MyST notebooks executed at build time (myst-nb).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import api_pages  # noqa: E402  (docs/api_pages.py, beside this file)

api_pages.write(HERE / "api")

project = "difflab"
author = "the difflab authors"
copyright = "2026, the difflab authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", "**.py", "api_pages.py"]
root_doc = "index"

# MathJax would be fetched from a CDN, and difflab's pages are read offline: formulas stay plain text, as in the code.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"] if os.environ.get("DIFFLAB_DOCS_LAX") else []

# Tutorials run at build time; their outputs are cached (jupyter-cache) so a rebuild re-runs only what changed.
nb_execution_mode = os.environ.get("DIFFLAB_DOCS_EXECUTE", "cache")
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # a torch.nn.Module method overridden here would show torch's text
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Arguments", "params_style"), ("Shapes", "notes_style")]

html_theme = "furo"
html_title = "difflab"
html_static_path: list[str] = []
html_show_sourcelink = False

# difflab's docstrings write formulas in plain text (|x|, a * b, x_t): reST would read | as a substitution and * as
# emphasis, so outside `code` they are escaped; `name` in a docstring is code.
default_role = "code"
# A *word* or *a few words* stays emphasis.
_CODE = re.compile(r"(``.*?``|`[^`]*`|(?<![\w*])\*[A-Za-z][A-Za-z ,'-]*[A-Za-z]\*(?![\w*]))")


def _plain_formulas(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        lines[i] = "".join(part if part[:1] in "`*" and _CODE.fullmatch(part) else
                           part.replace("*", r"\*").replace("|", r"\|") for part in _CODE.split(line))


def setup(app):
    app.connect("autodoc-process-docstring", _plain_formulas)
