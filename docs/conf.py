"""Sphinx configuration: ``make docs`` (warnings are errors) or tests/test_docs.py."""

import sgn

project = "sgn"
author = "the sgn developers"
copyright = "2026, the sgn developers"
release = version = sgn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# results_data holds raw JSON; README.md files there are not pages.
exclude_patterns = ["_build", "results_data", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "alabaster"
html_title = f"sgn {release}"
