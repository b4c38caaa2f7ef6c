"""The textual IR: an MLIR-like text form of modules that round-trips exactly.

::

    fedc.module @temperature {
      fedc.func @get_average_temperature(%t: {float32}@CLIENTS) -> float32@SERVER {
        %0 = fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)
        fedc.return %0
      }
    }

:func:`print_module` writes a module, :func:`parse_module` reads one back:
``parse_module(print_module(m)) == m`` (source locations included) and
``print_module(parse_module(t)) == t`` for printed text ``t``.
:func:`print_node` / :func:`parse_node` do the same for one computation
outside a module. The form is documented in ``docs/ir.md``; the grammar is
``grammar/ir.lark``.

A region lists ops and ends with ``fedc.return``. Values named by identifiers
(``%m``) are block locals; numbered values (``%0``) are anonymous
sub-expressions (temporaries) that the parser puts back into the tree, so each
is used exactly once, later in the region that defines it. Every op carries
its type, which the parser recomputes and checks; every error is a located
:class:`~fedc.errors.ParseError`.

The printer is :mod:`fedc.ir.printer`, the parser :mod:`fedc.ir.parser`, and
the spelling they share (op names, strings, numbers, literals, attributes)
:mod:`fedc.ir.text_format`; this module re-exports their public functions.
"""

from fedc.ir.parser import parse_module, parse_node
from fedc.ir.printer import print_module, print_node
from fedc.ir.text_format import intrinsic_uri, op_name

__all__ = [
    "intrinsic_uri",
    "op_name",
    "parse_module",
    "parse_node",
    "print_module",
    "print_node",
]
