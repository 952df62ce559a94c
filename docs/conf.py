"""Sphinx configuration of the captum-baselines documentation.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The API reference is generated from the docstrings (autodoc, Google style via
napoleon); the tutorials are the committed notebooks under ``tutorials/``,
rendered with their saved outputs and never executed here.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The checkout's package first, so that the reference documents this tree even
# when another copy is installed; then the local extension.
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

import captum_baselines  # noqa: E402

project = "captum-baselines"
author = "the captum-baselines developers"
copyright = "the captum-baselines developers"
release = captum_baselines.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
    "captum_baselines_docs",
]

# tutorials/ and upstream/ here are copies made at build time (see
# captum_baselines_docs.mirror_sources).
exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints"]
templates_path: list[str] = []

# -- API reference -----------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "member-order": "groupwise",
}
# The types are in the docstrings (Captum style: ``inputs (Tensor or tuple)``);
# signatures stay readable, and overloads (``return_convergence_delta``) show
# once, as the implementation's signature.
autodoc_typehints = "none"
autodoc_preserve_defaults = True
# Members without a docstring of their own (Captum's `has_convergence_delta`)
# are left out rather than shown with the base class's text.
autodoc_inherit_docstrings = False
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
add_module_names = False
python_use_unqualified_type_names = True

# -- Markdown pages and notebooks -------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"
# Heading levels that skip (H1 to H3) render fine; they are not worth failing
# the build over notebooks that others edit. Every other warning is an error.
suppress_warnings = ["myst.header"]
nb_merge_streams = True

# -- HTML --------------------------------------------------------------------
html_theme = "furo"
html_title = f"captum-baselines {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}
