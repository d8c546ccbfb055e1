"""The Voila dashboard: the team's window on the lake and its syncs.

``build()`` returns one ipywidgets tree (shown by ``notebooks/dashboard.ipynb``)
with five tabs, one module each: :mod:`.overview`, :mod:`.data`, :mod:`.edit`,
:mod:`.schemas`, :mod:`.sync`; :mod:`.app` is the frame around them,
:mod:`.html` and :mod:`.charts` (inline SVG drawn by :mod:`.svg`) the pieces
they share, :mod:`.background` the destination read that does not hold up the
first render, and :mod:`.serve` the Voila launch behind ``make dashboard``
(offline page, kernels ended with their page).  Every number comes from the
lake or the destination at the moment it is shown.
"""
from .app import Dashboard, build
from .charts import fk_graph, load_levels

__all__ = ["Dashboard", "build", "fk_graph", "load_levels"]
