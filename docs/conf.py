"""Sphinx configuration for the pyro_lfi documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``. Nothing is executed
(the tutorials are shown as source), and nothing is fetched from the internet.
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # document this checkout, whatever is installed
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyro_lfi  # noqa: E402

project = "pyro_lfi"
author = "pyro_lfi contributors"
copyright = "pyro_lfi contributors"
version = release = pyro_lfi.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # README/ARCHITECTURE links to "#benchmark" etc. resolve

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "both"  # class docstring and __init__'s

nitpicky = False
suppress_warnings = ["myst.xref_missing"]  # links into the repository (tests/, tutorials/) outside the site

html_theme = "furo"
html_title = f"pyro_lfi {release}"
