"""Sphinx configuration of the mimocorb documentation (``sphinx-build -W -b html docs docs/_build/html``).

The API pages are built from the docstrings (autodoc, NumPy style through napoleon); the
Markdown pages (architecture, buffer API) are read with MyST. The package must be
installed (``pip install -e ".[docs]"``): autodoc imports it, the compiled core included.
"""

import mimocorb

project = "mimocorb"
author = "mimocorb developers"
copyright = "2026, mimocorb developers"
release = mimocorb.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinxarg.ext",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
# The README's GitHub-relative links point into the repository, not into this site.
# A name that two modules define (e.g. a re-export) is an ambiguous cross-reference, not an error.
suppress_warnings = ["myst.xref_missing", "ref.python"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
# Optional extras a user may not have: their modules import them only when used, except
# the web monitor's server process (documented, not imported by the run).
autodoc_mock_imports = ["picosdk", "uproot", "starlette", "uvicorn"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# Attributes sections as fields of their class: a documented property is then not described twice.
napoleon_use_ivar = True
nitpicky = False

html_theme = "furo"
html_title = f"mimocorb {release}"
