"""Sphinx configuration of convcore's documentation site.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (CI does, warnings as errors). The API
reference is generated from each public module's ``__all__`` (``_ext/apipages.py``), so every
public name appears; the tutorials are executed while building (``_ext/tutorial.py``).
"""

import os
import sys
import warnings

sys.path.insert(0, os.path.abspath("_ext"))

import convcore  # noqa: E402

# numpydoc does not know PyTorch's "Shape" section; _ext/shapes.py renders it as part of Notes.
warnings.filterwarnings("ignore", message="Unknown section Shape", category=UserWarning)

project = "convcore"
author = "the convcore developers"
copyright = "2026, the convcore developers"
release = convcore.__version__
version = release

extensions = [
    "apipages",            # first: it writes the API pages autosummary then reads
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "shapes",
    "tutorial",
    "myst_parser",         # the user guide and the training page are Markdown
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3
autosummary_generate = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"          # numpydoc sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "tutorials/*.py", "SANITIZERS.md", "demo", "**/__pycache__"]
html_theme = "furo"
html_title = f"convcore {release}"
html_static_path = []
nitpicky = False
