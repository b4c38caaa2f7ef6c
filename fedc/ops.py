"""Local tensor ops for use while tracing: ``fedc.ops.matmul(x, w)``, ``fedc.ops.reduce_sum(x, axis=0)``.

Each function applies the registry's local op of the same name to traced
values and Python constants (which take the dtype of the traced operands) and
returns a traced value. Attributes are keyword arguments (``axis``,
``keepdims``, ``dtype``, ``shape``, ``type``). Python operators on traced values
(``+ - * / // % ** @ < <= > >=``, unary ``-`` and ``abs``) call these too.
"""

from __future__ import annotations

from fedc.ir.intrinsics import IntrinsicKind as _Kind
from fedc.ir.intrinsics import with_kind as _with_kind


def _make(uri: str, doc: str):
    def op(*operands, **attrs):
        from fedc.frontend.tracing import apply_local_op

        return apply_local_op(uri, *operands, **attrs)

    op.__name__ = uri
    op.__qualname__ = uri
    op.__doc__ = doc
    return op


__all__: list = []
for _definition in _with_kind(_Kind.LOCAL):
    globals()[_definition.uri] = _make(_definition.uri, f"{_definition.doc}: {_definition.signature}")
    __all__.append(_definition.uri)
