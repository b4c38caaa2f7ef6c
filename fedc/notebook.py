"""Jupyter/IPython display of computations as pictures: ``%load_ext fedc.notebook``.

After loading the extension, a :class:`fedc.Computation` shown in a notebook
cell is drawn as its dataflow picture (:func:`fedc.viz.to_svg`). The picture
is a tool on top of the API, so the API object does not draw itself; this
extension tells IPython how to.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

from fedc import viz
from fedc.computation import Computation
from fedc.errors import FedcError

__all__ = ["load_ipython_extension", "svg", "unload_ipython_extension"]

_SVG = "image/svg+xml"


def svg(computation: Computation) -> Optional[str]:
    """The SVG picture of ``computation``; ``None`` (with a warning) when graphviz cannot render."""
    try:
        return viz.to_svg(computation.to_ir(), computation.name)
    except FedcError as e:
        warnings.warn(f"cannot draw {computation.name}: {e.message}", stacklevel=2)
        return None


def load_ipython_extension(ipython: Any) -> None:
    """Registers :func:`svg` as the SVG formatter of computations (IPython calls this on ``%load_ext``)."""
    ipython.display_formatter.formatters[_SVG].for_type(Computation, svg)


def unload_ipython_extension(ipython: Any) -> None:
    ipython.display_formatter.formatters[_SVG].pop(Computation, None)
