"""Pictures of IR: the dataflow graph of one computation, drawn with graphviz.

    >>> graph = fedc.viz.to_graphviz(module, "next_fn")   # a graphviz.Digraph
    >>> svg = fedc.viz.to_svg(module, "next_fn")            # SVG text
    >>> fedc.viz.render(module, "next_fn", "next_fn.png", "png")

What the picture shows:

* **Nodes** are the computation's parameters (a struct parameter of placed
  values, such as ``<server_weights=…@SERVER,federated_dataset={…}@CLIENTS>``,
  is split into one node per element), every intrinsic call (a bold box named
  after the intrinsic, e.g. ``federated_mean``), every call of a local
  computation (a TensorFlow block by its name, ``@name`` for another
  computation of the module, a local op such as ``add``), constants (literals,
  placements, data) and the ``result``. A node made for a block local shows the
  local's name (``%mean``) under its own, so the picture reads against the
  textual IR.
* **Selections and struct packing are folded into edges**: an edge from a node
  that produced a struct says which element it carries (``.a``, ``[0]``), and
  an edge into a node that receives a struct of several values says which
  element of the argument it is (``as [1]``, ``as .x``). So the picture shows
  the real dataflow, not the plumbing.
* **Lambdas** get a cluster of their own, labelled ``λ x``, holding their
  parameter and body. A lambda used as a value (the function given to
  ``federated_map``) ends in a ``λ x`` node whose outgoing dashed edge carries
  the function; a lambda applied on the spot receives its argument on its
  parameter node.
* **Clusters by placement**: nodes are grouped into ``SERVER``, ``CLIENTS``
  and ``local (unplaced)`` clusters, each with its own colour. A node's
  placement is its result type's placement: a federated type's placement, the
  common placement of a struct whose elements are all placed alike, otherwise
  unplaced. Inside a lambda's cluster, placed nodes get nested placement
  clusters of the same colours.
* **Edges** are labelled with the TFF type of the value flowing
  (``{float32}@CLIENTS``), shortened with ``…`` when long (the full type is the
  edge's tooltip), and coloured by that value's placement; functions flow on
  dashed edges. ``edge_label(type) -> str`` replaces the type text (for
  instance with the bytes a value costs per client; a newline in it starts a new line).
  Each label is drawn as a small text node on its edge, in the cluster the
  value comes from: dot overlaps real edge labels in clustered graphs.

* **Costs** (``costs=True``; ``fedc viz`` draws them unless ``--no-costs``):
  an edge on which a value crosses between server and clients — into a
  broadcast, an aggregation, a secure sum, a select — also shows what it
  costs each client per round (``↓ 31400 B per client`` from the server,
  ``↑ 4 B per client`` to it, symbolic such as ``40*d0`` where a dimension
  is unknown), and is drawn thicker; the caption adds the totals and says what
  each unknown stands for. Edges that stay on one side keep their type label.

Pictures across passes: ``render_stages(module, "inline,call-dominant",
"out.html")`` (``fedc viz algo.fed --passes PIPELINE --stages -o out.html``)
runs the pipeline one pass at a time and writes one self-contained HTML page
with the picture before the first pass and after each pass side by side, each
panel titled with the pass, its statistics and whether it changed the module
(:func:`pass_stages` and :func:`stages_html` are the two halves).

The output is deterministic: the same module gives the same DOT source.
``import fedc`` does not import graphviz; this module imports it when a
picture is made. Rendering SVG or PNG needs graphviz's ``dot`` program; without
it a :class:`~fedc.errors.FedcError` says how to install it.
"""

from __future__ import annotations

import dataclasses
import html
import os
import pathlib
from typing import Any, Callable, Optional, Union

import numpy as np

from fedc.limits import deep_recursion
from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.abstract import LOCAL, MIXED, Evaluator, Pack, leaves, placement_of
from fedc.ir.module import Module
from fedc.types import FederatedType, FunctionType, SequenceType, StructType, Type

__all__ = ["FORMATS", "render", "to_graphviz", "to_svg"]

# The pictures across passes (fedc viz --stages) are fedc.stages' (a tool on top of this one).

FORMATS = ("svg", "png", "dot")

MISSING_DOT = (
    "graphviz's 'dot' program is not installed: install graphviz "
    "(apt-get install graphviz, brew install graphviz, or conda install graphviz)"
)

#: Edge labels longer than this many characters are shortened with an ellipsis.
EDGE_LABEL_WIDTH = 40
_NODE_SUBTITLE_WIDTH = 40
_TITLE_WIDTH = 90

EdgeLabel = Callable[[Type], Optional[str]]

# --------------------------------------------------------------------------
# Styles

_LOCAL = LOCAL
_PLACEMENT_ORDER = ("SERVER", "CLIENTS", _LOCAL)

# cluster label, cluster fill, border / edge colour
_PLACEMENT_STYLE = {
    "SERVER": ("SERVER", "#fff4e0", "#c46f00"),
    "CLIENTS": ("CLIENTS", "#e6f0fb", "#1f63b0"),
    _LOCAL: ("local (unplaced)", "#edf6e6", "#4f7f32"),
}
_FONT = "Helvetica"
_SUBTITLE_COLOR = "#555555"


# --------------------------------------------------------------------------
# Public API


def to_graphviz(
    module: Module,
    symbol: Optional[str] = None,
    *,
    edge_label: Optional[EdgeLabel] = None,
    title: Optional[str] = None,
    costs: bool = False,
):
    """The dataflow graph of computation ``symbol`` of ``module`` as a ``graphviz.Digraph``.

    ``module`` may also be a :class:`fedc.Computation` (then ``symbol`` defaults to its
    name). Otherwise ``symbol`` defaults to the module's last computation (the entry point of a
    traced computation). ``edge_label(type)`` gives the text shown on an edge
    for a value of that type (default: the shortened TFF type string); ``None``
    or ``""`` shows no type. ``title`` is the graph's caption (default: the
    symbol and its type; ``""`` for none).

    With ``costs=True`` the edges on which a value crosses between server and
    clients (into a broadcast, an aggregation, a secure sum, a select, …) also
    show the bytes it costs per client and round (``↓ 31400 B per client``
    from the server, ``↑`` to it; symbolic where the type has unknown
    dimensions, see :func:`fedc.passes.analysis.communication_cost`), and the
    caption adds the totals and says what each unknown stands for.
    """
    from fedc.computation import Computation

    graphviz = _import_graphviz()
    if isinstance(module, Computation):
        module, symbol = module.to_ir(), symbol or module.name
    if not isinstance(module, Module):
        raise FedcError(f"fedc.viz draws a fedc.ir.Module or a fedc.Computation, not {type(module).__name__}")
    if symbol is None:
        if not len(module):
            raise FedcError(f"module @{module.name} has no computation to draw")
        symbol = module.symbols[-1]
    computation = module.lookup(symbol)
    builder = _Builder(module, edge_label, costs)
    builder.build(computation)
    builder.full_title = f"@{symbol} : {computation.type_signature}"
    if title is None:
        title = f"@{symbol} : {_short_type(computation.type_signature, _TITLE_WIDTH)}"
    return builder.emit(graphviz, name=symbol, title=title)


def to_svg(module: Module, symbol: Optional[str] = None, **options) -> str:
    """The picture of :func:`to_graphviz` as SVG text (needs graphviz's ``dot``)."""
    return _pipe(to_graphviz(module, symbol, **options), "svg").decode("utf-8")


def render(
    module: Module,
    symbol: Optional[str],
    path: Union[str, os.PathLike],
    format: Optional[str] = None,
    **options,
) -> pathlib.Path:
    """Writes the picture of ``symbol`` to ``path`` as ``svg``, ``png`` or ``dot``.

    ``format`` defaults to the path's suffix. ``dot`` writes the DOT source and
    needs no graphviz binary; ``svg`` and ``png`` need ``dot``. Returns the path.
    """
    path = pathlib.Path(path)
    if format is None:
        format = path.suffix.lower().lstrip(".")
        format = {"gv": "dot"}.get(format, format)
    format = format.lower()
    if format not in FORMATS:
        raise FedcError(f"cannot draw {path} as {format!r}: the formats are {', '.join(FORMATS)}")
    graph = to_graphviz(module, symbol, **options)
    data = graph.source.encode("utf-8") if format == "dot" else _pipe(graph, format)
    try:
        path.write_bytes(data)
    except OSError as e:
        raise FedcError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _import_graphviz():
    try:
        import graphviz
    except ImportError:
        raise FedcError(
            "the graphviz Python package is not installed: pip install graphviz "
            "(and graphviz's 'dot' program to render pictures)"
        ) from None
    return graphviz


def _pipe(graph, format: str) -> bytes:
    graphviz = _import_graphviz()
    try:
        return graph.pipe(format=format)
    except graphviz.ExecutableNotFound:
        raise FedcError(MISSING_DOT) from None


# --------------------------------------------------------------------------
# Text helpers


def _short_type(t: Optional[Type], width: int = EDGE_LABEL_WIDTH) -> str:
    """``str(t)``, or a shortened form of at most about ``width`` characters that keeps the
    placement and the outer structure: ``{<float32[784,10],…>}@CLIENTS``."""
    if t is None:
        return ""
    full = str(t)
    if len(full) <= width:
        return full
    return _shorten(t, width)


def _shorten(t: Type, width: int) -> str:
    """``str(t)`` if it fits in ``width``; else a form that elides whole struct elements with ``…``
    (tensor types are never cut). May return a string longer than ``width`` when even that
    cannot fit; callers compare lengths."""
    full = str(t)
    if len(full) <= width:
        return full
    if isinstance(t, FederatedType):
        if t.all_equal:
            suffix = f"@{t.placement}"
            return _shorten(t.member, width - len(suffix)) + suffix
        suffix = f"}}@{t.placement}"
        return "{" + _shorten(t.member, width - len(suffix) - 1) + suffix
    if isinstance(t, SequenceType):
        return _shorten(t.element, width - 1) + "*"
    if isinstance(t, FunctionType):
        room = width - 6  # "(", " -> ", ")"
        if t.parameter is None:
            return f"( -> {_shorten(t.result, room + 1)})"
        parameter, result = str(t.parameter), str(t.result)
        # The result keeps its full form if it can, then the parameter, else both are shortened.
        if len(result) + len(_shorten(t.parameter, 0)) <= room:
            parameter = _shorten(t.parameter, room - len(result))
        elif len(parameter) + len(_shorten(t.result, 0)) <= room:
            result = _shorten(t.result, room - len(parameter))
        else:
            parameter = _shorten(t.parameter, room // 2)
            result = _shorten(t.result, room - len(parameter))
        return f"({parameter} -> {result})"
    if isinstance(t, StructType):
        items = list(t.items())
        parts: list[str] = []
        used = 2  # "<" and ">"
        for index, (name, element) in enumerate(items):
            prefix = f"{name}=" if name is not None else ""
            separator = 1 if parts else 0
            reserve = 0 if index == len(items) - 1 else 2  # ",…" after this element
            room = width - used - separator - reserve
            text = prefix + str(element)
            if len(text) > room:
                shortened = prefix + _shorten(element, room - len(prefix))
                if len(shortened) > room:
                    parts.append("…")
                else:
                    parts.append(shortened)
                    if index < len(items) - 1:
                        parts.append("…")
                break
            parts.append(text)
            used += separator + len(text)
        return "<" + ",".join(parts) + ">"
    return full


def _clip(text: str, width: int) -> str:
    text = _printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _html_label(title: str, subtitles: tuple = (), bold: bool = False, italic: bool = False) -> str:
    """An HTML-like graphviz label: ``title`` over smaller grey subtitle lines."""
    text = html.escape(_printable(title), quote=False)
    if bold:
        text = f"<b>{text}</b>"
    if italic:
        text = f"<i>{text}</i>"
    lines = [text] + [
        f'<font point-size="9" color="{_SUBTITLE_COLOR}">{html.escape(_printable(s), quote=False)}</font>'
        for s in subtitles
        if s
    ]
    return "<" + "<br/>".join(lines) + ">"


def _tooltip(text: str):
    """A plain (non-HTML) attribute value; backslashes kept literal."""
    import graphviz

    return graphviz.nohtml(_printable(text).replace("\\", "\\\\"))


def _literal_text(value: np.ndarray) -> str:
    """A short text for a literal: ``0.5``, ``[1,2,3]``, ``'abc'``, ``[[1.0,…]`` …"""
    if value.ndim == 0:
        scalar = value[()]
        text = repr(str(scalar)) if value.dtype.kind in "UO" else str(scalar)
    else:
        text = np.array2string(
            value, separator=",", threshold=4, edgeitems=2, max_line_width=10**6,
            formatter={"float_kind": str, "complex_kind": str, "numpystr": lambda x: repr(str(x))},
        )
    return _clip(" ".join(text.split()), 24)


# --------------------------------------------------------------------------
# Placement


def _placement(t: Optional[Type]) -> str:
    """"SERVER", "CLIENTS" or "local": a federated type's placement, the common placement of
    a struct whose elements are all placed alike, otherwise local."""
    placement = placement_of(t)
    return _LOCAL if placement == MIXED else placement


# --------------------------------------------------------------------------
# Symbolic values: what an IR expression stands for in the picture


@dataclasses.dataclass(frozen=True)
class _Port:
    """The output of graph node ``node``, or the element ``path`` (``(".a", "[0]")``) of it."""

    node: str
    path: tuple
    type: Type


_Value = Union[_Port, Pack]  # a struct built in the IR is a Pack: its elements are separate values


@dataclasses.dataclass
class _Cluster:
    name: str
    label: str
    placement: str
    parent: Optional[str]
    lambda_scope: bool
    nodes: list = dataclasses.field(default_factory=list)
    children: list = dataclasses.field(default_factory=list)


class _Builder(Evaluator):
    """Walks one computation, making nodes, edges and clusters; then emits a Digraph.

    The walk is :class:`fedc.ir.abstract.Evaluator`'s; the context is the lambda scope (a tuple
    of lambda clusters, ``()`` at the top level) and a value is a :class:`_Port` or a pack of them."""

    def __init__(self, module: Module, edge_label: Optional[EdgeLabel], costs: bool = False):
        super().__init__(module)
        self.edge_label = edge_label
        self.costs = costs
        self.unknowns = None  # names of unknown sizes, when costs are shown
        self.totals: dict[str, Any] = {}  # direction -> Bytes, when costs are shown
        self.nodes: dict[str, tuple[str, dict]] = {}  # id -> (cluster name, attrs)
        self.edges: list[tuple[str, str, dict, Optional[str]]] = []  # tail, head, attrs, label
        self.clusters: dict[str, _Cluster] = {}
        self.lambda_count = 0
        self.full_title = ""

    # Clusters -------------------------------------------------------------
    def cluster_for(self, scope: tuple, placement: str) -> str:
        """The cluster holding a node of ``placement`` in lambda ``scope`` (() is the top level)."""
        if not scope:
            name = f"cluster_{placement.lower()}"
            if name not in self.clusters:
                label = _PLACEMENT_STYLE[placement][0]
                self.clusters[name] = _Cluster(name, label, placement, None, False)
            return name
        lambda_cluster = scope[-1]
        if placement == _LOCAL:
            return lambda_cluster
        name = f"{lambda_cluster}_{placement.lower()}"
        if name not in self.clusters:
            self.clusters[name] = _Cluster(name, _PLACEMENT_STYLE[placement][0], placement, lambda_cluster, False)
            self.clusters[lambda_cluster].children.append(name)
        return name

    def new_lambda_scope(self, scope: tuple, label: str) -> tuple:
        self.lambda_count += 1
        name = f"cluster_lambda{self.lambda_count}"
        parent = self.cluster_for(scope, _LOCAL)
        self.clusters[name] = _Cluster(name, label, _LOCAL, parent, True)
        self.clusters[parent].children.append(name)
        return scope + (name,)

    # Nodes and edges ------------------------------------------------------
    def add_node(self, scope: tuple, placement: str, **attrs) -> str:
        node_id = f"n{len(self.nodes)}"
        cluster = self.cluster_for(scope, placement)
        self.nodes[node_id] = (cluster, attrs)
        self.clusters[cluster].nodes.append(node_id)
        return node_id

    def add_edge(self, tail: str, head: str, t: Type, path: tuple = (), slot: tuple = (), show_slot=False,
                 cost: Optional[str] = None):
        lines = []
        where = "".join(path)
        if show_slot and slot:
            where = f"{where} as {''.join(slot)}" if where else f"as {''.join(slot)}"
        if where:
            lines.append(where)
        if cost:
            lines.append(cost)
        if self.edge_label is not None:
            text = self.edge_label(t)
            if text:
                lines.extend(str(text).splitlines())
        else:
            lines.append(_short_type(t))
        placement = _placement(t)
        color = _PLACEMENT_STYLE[placement][2] if placement != _LOCAL else "#444444"
        attrs = {"color": color, "tooltip": _tooltip(f"{t}: {cost}" if cost else str(t))}
        if isinstance(t, FunctionType):
            attrs["style"] = "dashed"
        elif cost:
            attrs["penwidth"] = "2.2"
        elif placement != _LOCAL:
            attrs["penwidth"] = "1.4"
        label = None
        if lines:
            label = "<" + "<br/>".join(html.escape(_printable(line), quote=False) for line in lines) + ">"
        self.edges.append((tail, head, attrs, label))

    def connect(self, value: _Value, head: str, scope: tuple, crossings: tuple = ()) -> None:
        """Edges carrying ``value`` into node ``head``; a packed struct gives one edge per element.

        ``crossings`` (of an intrinsic, when costs are shown) label the edges whose value crosses
        between server and clients with its bytes per client."""
        ports = [(steps, indices, port) for indices, steps, port in leaves(value)]
        if not ports and isinstance(value, Pack):
            empty = self.constant_node(scope, "<>", value.type, "empty struct")
            self.add_edge(empty, head, value.type)
            return
        data = [(slot, port) for slot, _, port in ports if not isinstance(port.type, FunctionType)]
        show_slot = len(data) > 1 or any(s.startswith(".") for slot, _ in data for s in slot[-1:])
        for slot, indices, port in ports:
            self.add_edge(port.node, head, port.type, port.path, slot,
                          show_slot and not isinstance(port.type, FunctionType),
                          cost=self.cost_label(crossings, indices, port))

    def cost_label(self, crossings: tuple, indices: tuple, port: _Port) -> Optional[str]:
        """``↓ 31400 B per client`` for a leaf of an intrinsic's argument that crosses placements."""
        from fedc.passes import analysis

        for crossing in crossings:
            if indices[: len(crossing.slot)] != crossing.slot:
                continue
            if indices == crossing.slot and not port.path:
                return analysis.bytes_label(crossing)
            # A part of the value that crosses: its own bytes.
            part = dataclasses.replace(
                crossing, bytes=analysis.type_bytes(port.type, self.unknowns, "an edge of this picture"))
            return analysis.bytes_label(part)
        return None

    def intrinsic_crossings(self, intrinsic: bb.Intrinsic, local_name: Optional[str]) -> tuple:
        """What a call of ``intrinsic`` moves between server and clients (only when costs are shown)."""
        if not self.costs or not intrinsic.definition.is_federated:
            return ()
        from fedc.passes import analysis

        if self.unknowns is None:
            self.unknowns = analysis.Unknowns()
        where = intrinsic.uri + (f" %{local_name}" if local_name else "")
        crossings = tuple(analysis.intrinsic_crossings(intrinsic, self.unknowns, where))
        for crossing in crossings:
            self.totals[crossing.direction] = self.totals.get(crossing.direction, 0) + crossing.bytes
        return crossings

    def cost_caption(self) -> tuple:
        """Caption lines: the totals per client and round, and what each unknown stands for."""
        if not self.costs:
            return ()
        down, up = self.totals.get("broadcast", 0), self.totals.get("upload", 0)
        lines = [f"per client and round: ↓ {down} B from the server, ↑ {up} B to the server"]
        if self.unknowns is not None:
            lines += [f"{name} = {text}" for name, text in self.unknowns.legend.items()]
        return tuple(lines)

    def constant_node(self, scope: tuple, title: str, t: Type, subtitle: str = "") -> str:
        return self.add_node(
            scope, _placement(t), label=_html_label(title, (subtitle,)), shape="note",
            style="filled", fillcolor="#ffffff", color="#777777", tooltip=_tooltip(str(t)),
        )

    def call_node(self, scope: tuple, result: Type, title: str, kind: str, subtitles=()) -> str:
        """A node for a call; ``kind`` is "intrinsic", "op", "tensorflow", "symbol" or "call"."""
        placement = _placement(result)
        border = _PLACEMENT_STYLE[placement][2]
        subtitles = tuple(s for s in subtitles if s and s != f"%{title}")  # no "%server_init" under "server_init"
        attrs: dict[str, Any] = {"tooltip": _tooltip(f"{title} : {result}"), "fillcolor": "#ffffff"}
        if kind == "intrinsic":
            attrs.update(label=_html_label(title, subtitles, bold=True), shape="box", style="filled,bold",
                         penwidth="2", color=border)
        elif kind == "op":
            attrs.update(label=_html_label(title, subtitles), shape="box", style="rounded,filled", color="#444444")
        elif kind == "tensorflow":
            attrs.update(label=_html_label(title, subtitles), shape="component", style="filled",
                         fillcolor="#fffbe8", color="#8a6d00")
        elif kind == "symbol":
            attrs.update(label=_html_label(title, subtitles), shape="box", style="filled", peripheries="2",
                         color="#444444")
        else:
            attrs.update(label=_html_label(title, subtitles, italic=True), shape="box", style="rounded,filled",
                         color="#444444")
        return self.add_node(scope, placement, **attrs)

    def parameter_node(self, scope: tuple, name: str, t: Type) -> str:
        placement = _placement(t)
        return self.add_node(
            scope, placement, label=_html_label(name, (_short_type(t, _NODE_SUBTITLE_WIDTH),), bold=True),
            shape="ellipse", style="filled", fillcolor="#ffffff", color=_PLACEMENT_STYLE[placement][2],
            penwidth="1.5", tooltip=_tooltip(f"{name} : {t}"),
        )

    # The walk -------------------------------------------------------------
    @deep_recursion
    def build(self, computation: bb.Node) -> None:
        scope: tuple = ()
        if isinstance(computation, bb.Lambda):
            env: dict[str, _Value] = {}
            if computation.parameter_name is not None:
                env[computation.parameter_name] = self.parameters(
                    scope, computation.parameter_name, computation.parameter_type)
            value = self.evaluate(computation.result, env, scope)
            result_type = computation.result.type_signature
        else:
            value = self.evaluate(computation, {}, scope)
            result_type = computation.type_signature
        placement = _placement(result_type)
        result = self.add_node(
            scope, placement, label=_html_label("result", (_short_type(result_type, _NODE_SUBTITLE_WIDTH),),
                                                bold=True),
            shape="ellipse", style="filled", fillcolor="#ffffff", peripheries="2",
            color=_PLACEMENT_STYLE[placement][2], penwidth="1.5", tooltip=_tooltip(f"result : {result_type}"),
        )
        self.connect(value, result, scope)

    def parameters(self, scope: tuple, name: str, t: Type) -> _Value:
        """The parameter's nodes: one per element for a struct of placed values, else one."""
        if isinstance(t, StructType) and len(t) and any(_placement(e) != _LOCAL for e in t):
            elements = []
            for index, (element_name, element_type) in enumerate(t.items()):
                label = element_name if element_name is not None else f"{name}[{index}]"
                node = self.parameter_node(scope, label, element_type)
                elements.append((element_name, _Port(node, (), element_type)))
            return Pack(tuple(elements), t)
        return _Port(self.parameter_node(scope, name, t), (), t)

    # Hooks of the evaluator: values ---------------------------------------
    def free_reference(self, node: bb.Reference, scope: tuple) -> _Port:
        return _Port(self.constant_node(scope, f"%{node.name}", node.type_signature, "free reference"), (),
                     node.type_signature)

    def select(self, source: _Port, node: bb.Selection, step: str, scope: tuple) -> _Port:
        return _Port(source.node, source.path + (step,), node.type_signature)

    def constant(self, node: bb.Node, scope: tuple, local_name: Optional[str]) -> _Port:
        named = (f"%{local_name}",) if local_name else ()
        t = node.type_signature
        if isinstance(node, bb.Literal):
            return _Port(self.constant_node(scope, _literal_text(node.value), t, " ".join(named + (str(t),))), (), t)
        if isinstance(node, bb.Placement):
            return _Port(self.constant_node(scope, node.placement.name, t, " ".join(named + ("placement",))), (), t)
        if isinstance(node, bb.Compiled):
            title, subtitle = self.compiled_title(node)
            return _Port(self.call_node(scope, t, title, "tensorflow", (subtitle,) + named), (), t)
        # An unknown kind of node: show it rather than fail.
        return _Port(self.constant_node(scope, type(node).__name__, t), (), t)

    def data(self, node: bb.Data, scope: tuple, local_name: Optional[str]) -> _Port:
        t = node.type_signature
        return _Port(self.constant_node(scope, "data", t, _clip(node.uri, _NODE_SUBTITLE_WIDTH)), (), t)

    def intrinsic_value(self, node: bb.Intrinsic, scope: tuple, local_name: Optional[str]) -> _Port:
        named = (f"%{local_name}",) if local_name else ()
        kind = "intrinsic" if node.definition.is_federated else "op"
        return _Port(self.call_node(scope, node.type_signature, self.intrinsic_title(node), kind, named), (),
                     node.type_signature)

    def symbol_value(self, node: bb.SymbolRef, scope: tuple, local_name: Optional[str]) -> _Port:
        named = (f"%{local_name}",) if local_name else ()
        title, kind, subtitles = self.symbol_title(node.name)
        return _Port(self.call_node(scope, node.type_signature, title, kind, subtitles + named), (),
                     node.type_signature)

    # Hooks of the evaluator: calls ----------------------------------------
    def intrinsic_call(self, function: bb.Intrinsic, node: bb.Call, env: dict, scope: tuple, local_name) -> _Port:
        named = (f"%{local_name}",) if local_name else ()
        kind = "intrinsic" if function.definition.is_federated else "op"
        head = self.call_node(scope, node.type_signature, self.intrinsic_title(function), kind, named)
        crossings = self.intrinsic_crossings(function, local_name)
        return self.called(head, node, env, scope, crossings)

    def compiled_call(self, function: bb.Compiled, node: bb.Call, env: dict, scope: tuple, local_name) -> _Port:
        named = (f"%{local_name}",) if local_name else ()
        title, subtitle = self.compiled_title(function)
        return self.called(self.call_node(scope, node.type_signature, title, "tensorflow", (subtitle,) + named),
                           node, env, scope)

    def symbol_call(self, function: bb.SymbolRef, node: bb.Call, env: dict, scope: tuple, local_name) -> _Port:
        named = (f"%{local_name}",) if local_name else ()
        title, kind, subtitles = self.symbol_title(function.name)
        return self.called(self.call_node(scope, node.type_signature, title, kind, subtitles + named),
                           node, env, scope)

    def value_call(self, callee: _Value, node: bb.Call, env: dict, scope: tuple, local_name) -> _Port:
        """Calling a computed function (a local bound to a lambda, a parameter, …): the function
        flows into the call node on a dashed edge."""
        named = (f"%{local_name}",) if local_name else ()
        function = node.function
        title = f"call %{function.name}" if isinstance(function, bb.Reference) else "call"
        head = self.call_node(scope, node.type_signature, title, "call", named)
        self.connect(callee, head, scope)
        return self.called(head, node, env, scope)

    def called(self, head: str, node: bb.Call, env: dict, scope: tuple, crossings: tuple = ()) -> _Port:
        """The call node ``head``, with the call's argument flowing into it."""
        if node.argument is not None:
            self.connect(self.evaluate(node.argument, env, scope), head, scope, crossings)
        return _Port(head, (), node.type_signature)

    def applied_lambda(self, function: bb.Lambda, node: bb.Call, env: dict, scope: tuple, local_name) -> _Value:
        """A lambda applied on the spot: its cluster, the argument flowing into its parameter."""
        argument = node.argument
        inner_scope = self.new_lambda_scope(scope, self.lambda_title(function) + " (applied)")
        inner = dict(env)
        if function.parameter_name is not None:
            parameter = self.parameter_node(inner_scope, function.parameter_name, function.parameter_type)
            if argument is not None:
                self.connect(self.evaluate(argument, env, scope), parameter, scope)
            inner[function.parameter_name] = _Port(parameter, (), function.parameter_type)
        return self.evaluate(function.result, inner, inner_scope)

    def lambda_value(self, function: bb.Lambda, env: dict, scope: tuple, local_name: Optional[str]) -> _Value:
        """A lambda as a value: its cluster (parameter and body) ending in a ``λ x`` node."""
        named = (f"%{local_name}",) if local_name else ()
        title = self.lambda_title(function)
        inner_scope = self.new_lambda_scope(scope, title)
        inner = dict(env)
        if function.parameter_name is not None:
            parameter = self.parameter_node(inner_scope, function.parameter_name, function.parameter_type)
            inner[function.parameter_name] = _Port(parameter, (), function.parameter_type)
        body = self.evaluate(function.result, inner, inner_scope)
        t = function.type_signature
        exit_node = self.add_node(
            inner_scope, _LOCAL, label=_html_label(title, named), shape="box", style="rounded,filled,dashed",
            fillcolor="#ffffff", color="#444444", tooltip=_tooltip(f"{title} : {t}"),
        )
        self.connect(body, exit_node, inner_scope)
        return _Port(exit_node, (), t)

    # Titles ---------------------------------------------------------------
    @staticmethod
    def lambda_title(function: bb.Lambda) -> str:
        return f"λ {function.parameter_name}" if function.parameter_name is not None else "λ"

    @staticmethod
    def intrinsic_title(intrinsic: bb.Intrinsic) -> str:
        if not intrinsic.attrs:
            return intrinsic.uri
        attrs = ", ".join(f"{k}={_attr_text(v)}" for k, v in intrinsic.attrs)
        return f"{intrinsic.uri}{{{_clip(attrs, 30)}}}"

    @staticmethod
    def compiled_title(compiled: bb.Compiled) -> tuple[str, str]:
        kind = "TensorFlow" if compiled.kind == "tensorflow" else compiled.kind
        return (compiled.name or f"{kind} block", kind if compiled.name else compiled.content_hash[:15])

    def symbol_title(self, name: str) -> tuple[str, str, tuple]:
        """(title, node kind, subtitles) for a use of module computation ``@name``."""
        target = self.module[name] if name in self.module else None
        if isinstance(target, bb.Compiled):
            title, subtitle = self.compiled_title(target)
            if target.name is None or target.name != name:
                return f"@{name}", "tensorflow", (subtitle,)
            return title, "tensorflow", (subtitle,)
        return f"@{name}", "symbol", ()

    # Output ---------------------------------------------------------------
    def emit(self, graphviz, name: str, title: str):
        graph = graphviz.Digraph(name=_dot_id(name))
        graph.attr(rankdir="TB", newrank="true", fontname=_FONT, nodesep="0.3", ranksep="0.3",
                   tooltip=_tooltip(self.full_title or title or name))
        if title:
            graph.attr(label=_html_label(title, self.cost_caption(), bold=True), labelloc="t", fontsize="14")
        graph.attr("node", fontname=_FONT, fontsize="11", margin="0.12,0.04", height="0.3")
        graph.attr("edge", fontname=_FONT, fontsize="9", arrowsize="0.7")
        # An edge label is drawn as a node of its own on the edge: dot gives nodes room, whereas
        # real edge labels overlap each other in clustered graphs (a long-standing dot bug).
        # The label node sits in the tail's cluster: where the value it describes comes from.
        label_nodes: dict[str, list] = {}
        edges = []
        for index, (tail, head, attrs, label) in enumerate(self.edges):
            if label is None:
                edges.append((tail, head, attrs))
                continue
            label_id = f"e{index}"
            label_nodes.setdefault(self.nodes[tail][0], []).append((label_id, {
                "label": label, "shape": "plaintext", "fontsize": "9", "fontcolor": attrs["color"],
                "height": "0", "width": "0", "margin": "0.03,0.01", "tooltip": attrs["tooltip"],
            }))
            edges.append((tail, label_id, dict(attrs, arrowhead="none")))
            edges.append((label_id, head, attrs))
        roots = [f"cluster_{p.lower()}" for p in _PLACEMENT_ORDER if f"cluster_{p.lower()}" in self.clusters]
        for cluster in roots:
            self.emit_cluster(graph, cluster, 0, label_nodes)
        for tail, head, attrs in edges:
            graph.edge(tail, head, **attrs)
        return graph

    def emit_cluster(self, parent, name: str, depth: int, label_nodes: dict) -> None:
        cluster = self.clusters[name]
        label, fill, border = _PLACEMENT_STYLE[cluster.placement]
        with parent.subgraph(name=name) as sub:
            if cluster.lambda_scope:
                sub.attr(label=_html_label(cluster.label, italic=True), style="rounded,dashed,filled",
                         fillcolor="#ffffff" if depth % 2 else "#f8fbf5", color="#666666", fontcolor="#333333",
                         penwidth="1", fontsize="11", labeljust="l")
            else:
                sub.attr(label=_html_label(label, bold=True), style="rounded,filled", fillcolor=fill,
                         color=border, fontcolor=border, penwidth="1.5", fontsize="12", labeljust="l")
            for node_id in cluster.nodes:
                sub.node(node_id, **self.nodes[node_id][1])
            for node_id, attrs in label_nodes.get(name, ()):
                sub.node(node_id, **attrs)
            for child in cluster.children:
                self.emit_cluster(sub, child, depth + 1, label_nodes)


def _attr_text(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_attr_text(v) for v in value) + "]"
    if isinstance(value, np.dtype):
        return value.name
    return str(value)


def _dot_id(name: str) -> str:
    return name if name.isidentifier() else "computation"
