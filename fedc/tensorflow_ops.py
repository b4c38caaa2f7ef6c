"""Which TensorFlow ops a computation may run: the allowlist, and the check of a payload against it.

A ``Compiled`` node of kind ``tensorflow`` carries a serialized graph. Loading
it runs no Python code, but *running* it runs every op of the graph, and
TensorFlow has ops that write and read files (``WriteFile``, ``ReadFile``,
``MatchingFiles``, ``Save``), print to a file (``PrintV2`` with a
``file://`` stream), call back into Python (``PyFunc``), sleep or abort the
process. So fedc admits a graph only if every op in it, and in every function
of its library, is a pure computation op listed here: math, neural-network
kernels and their gradients, array manipulation, control flow and function
calls, tensor lists, random numbers, string processing, in-memory datasets and
their iterators, and printing to the standard streams.

The check runs where a payload enters fedc — when ``@fedc.tf_computation``
traces a function (so its author learns early), when textual IR is parsed and
protobuf IR deserialized, and again before a payload first runs (so a node
built by hand is checked too). A user who trusts a computation opts out with
``trusted=True`` (``fedc.tf_computation``, ``fedc.ir.parse_module``,
``fedc.ir.deserialize``), :func:`trusting` around any loading code, or
``--trusted`` on the command line: the payloads then loaded are remembered (by
content hash) as trusted for this process.
The list, and why each denied class is denied, is documented in
``docs/security.md``.

The graph is read with a minimal protobuf schema of TensorFlow's
``MetaGraphDef`` (the fields that hold ops, functions and attributes, with
TensorFlow's field numbers), so checking needs neither TensorFlow nor any
code from the payload.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
from typing import Iterator, Optional

from fedc.errors import FedcError, UnsafeTensorFlowError
from fedc.limits import MAX_NESTING

__all__ = [
    "ALLOWED_OPS",
    "ANONYMOUS_VARIABLE",
    "PRINT_STREAMS",
    "UnsafeTensorFlowError",
    "allowed",
    "admit",
    "check_payload",
    "content_hash",
    "graph_ops",
    "is_trusted",
    "trust",
    "trusting",
]


def _ops(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The allowlist, by category. An op not named here is refused.
ALLOWED_OPS: dict[str, frozenset[str]] = {
    "math": _ops("""
        Abs AccumulateNV2 Acos Acosh Add AddN AddV2 All Angle Any ApproximateEqual ArgMax ArgMin
        Asin Asinh Atan Atan2 Atanh BatchMatMul BatchMatMulV2 BatchMatMulV3 BesselI0 BesselI0e
        BesselI1 BesselI1e Betainc Bincount Bitcast BitwiseAnd BitwiseOr BitwiseXor Bucketize Cast
        Ceil Cholesky ClipByValue Complex ComplexAbs Conj Cos Cosh Cross Cumprod Cumsum
        CumulativeLogsumexp DenseBincount Digamma Div DivNoNan Einsum Equal Erf Erfc Erfinv
        EuclideanNorm Exp Expm1 FFT FFT2D FFT3D Floor FloorDiv FloorMod Greater GreaterEqual
        HistogramFixedWidth IFFT IFFT2D IFFT3D IRFFT IRFFT2D IRFFT3D Igamma IgammaGradA Igammac
        Imag Inv InvGrad Invert IsFinite IsInf IsNan L2Loss LeftShift Less LessEqual Lgamma LinSpace
        Log Log1p LogMatrixDeterminant LogicalAnd LogicalNot LogicalOr Lu MatMul MatrixBandPart
        MatrixDeterminant MatrixDiag MatrixDiagPart MatrixDiagPartV2 MatrixDiagPartV3 MatrixDiagV2
        MatrixDiagV3 MatrixInverse MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3 MatrixSolve
        MatrixSolveLs MatrixTriangularSolve Max Maximum Mean Min Minimum Mod Mul MulNoNan Ndtri Neg
        NextAfter NotEqual Polygamma PopulationCount Pow Prod Qr RFFT RFFT2D RFFT3D Real RealDiv
        Reciprocal ReciprocalGrad RightShift Rint Round Rsqrt RsqrtGrad SegmentMax SegmentMean
        SegmentMin SegmentProd SegmentSum SelfAdjointEigV2 Sign Sin Sinh Sqrt SqrtGrad Square
        SquaredDifference Sub Sum Svd Tan Tanh TanhGrad TridiagonalMatMul TridiagonalSolve
        TruncateDiv TruncateMod UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd
        UnsortedSegmentSum Xdivy Xlog1py Xlogy Zeta
    """),
    "neural networks": _ops("""
        AvgPool AvgPool3D AvgPool3DGrad AvgPoolGrad BiasAdd BiasAddGrad BiasAddV1 Conv2D
        Conv2DBackpropFilter Conv2DBackpropFilterV2 Conv2DBackpropInput Conv2DBackpropInputV2
        Conv3D Conv3DBackpropFilterV2 Conv3DBackpropInputV2 DepthwiseConv2dNative
        DepthwiseConv2dNativeBackpropFilter DepthwiseConv2dNativeBackpropInput Elu EluGrad
        FusedBatchNorm FusedBatchNormGrad FusedBatchNormGradV2 FusedBatchNormGradV3 FusedBatchNormV2
        FusedBatchNormV3 InTopK InTopKV2 LRN LRNGrad LeakyRelu LeakyReluGrad LogSoftmax MaxPool
        MaxPool3D MaxPool3DGrad MaxPoolGrad MaxPoolGradGrad MaxPoolGradGradV2 MaxPoolGradV2
        MaxPoolV2 MaxPoolWithArgmax NthElement Relu Relu6 Relu6Grad ReluGrad Selu SeluGrad Sigmoid
        SigmoidGrad Softmax SoftmaxCrossEntropyWithLogits Softplus SoftplusGrad Softsign
        SoftsignGrad SparseSoftmaxCrossEntropyWithLogits TopKV2
    """),
    "arrays": _ops("""
        BatchToSpaceND BroadcastArgs BroadcastGradientArgs BroadcastTo CheckNumerics CheckNumericsV2
        Concat ConcatOffset ConcatV2 Const ConjugateTranspose DepthToSpace Diag DiagPart
        DynamicPartition DynamicStitch Empty EnsureShape ExpandDims Fill Gather GatherNd GatherV2
        GuaranteeConst Identity IdentityN InplaceAdd InplaceSub InplaceUpdate InvertPermutation
        ListDiff LowerBound MirrorPad MirrorPadGrad OneHot OnesLike Pack Pad PadV2 ParallelConcat
        Placeholder PlaceholderWithDefault PreventGradient Range Rank Reshape Reverse
        ReverseSequence ReverseV2 Roll ScatterNd Select SelectV2 Shape ShapeN Size Slice
        Snapshot SpaceToBatchND SpaceToDepth Split SplitV Squeeze StopGradient StridedSlice
        StridedSliceGrad TensorScatterAdd TensorScatterMax TensorScatterMin TensorScatterSub
        TensorScatterUpdate TensorStridedSliceUpdate Tile Transpose Unique UniqueV2
        UniqueWithCounts UniqueWithCountsV2 Unpack UnravelIndex UpperBound Where ZerosLike
    """),
    "control flow and functions": _ops("""
        Assert Case ControlTrigger Enter Exit For If LoopCond Merge NextIteration NoOp
        PartitionedCall StatefulPartitionedCall StatelessCase StatelessIf StatelessWhile Switch
        SymbolicGradient While
    """),
    "tensor lists and arrays": _ops("""
        EmptyTensorList TensorListConcat TensorListConcatLists TensorListConcatV2
        TensorListElementShape TensorListFromTensor TensorListGather TensorListGetItem
        TensorListLength TensorListPopBack TensorListPushBack TensorListPushBackBatch
        TensorListReserve TensorListResize TensorListScatter TensorListScatterIntoExistingList
        TensorListScatterV2 TensorListSetItem TensorListSplit TensorListStack TensorArrayCloseV3
        TensorArrayConcatV3 TensorArrayGatherV3 TensorArrayGradV3 TensorArrayReadV3
        TensorArrayScatterV3 TensorArraySizeV3 TensorArraySplitV3 TensorArrayV3 TensorArrayWriteV3
    """),
    "random numbers": _ops("""
        Multinomial ParameterizedTruncatedNormal RandomGamma RandomPoisson RandomPoissonV2
        RandomShuffle RandomStandardNormal RandomUniform RandomUniformInt StatelessMultinomial
        StatelessParameterizedTruncatedNormal StatelessRandomBinomial StatelessRandomGammaV2
        StatelessRandomGammaV3 StatelessRandomGetAlg StatelessRandomGetKeyCounter
        StatelessRandomGetKeyCounterAlg StatelessRandomNormal StatelessRandomNormalV2
        StatelessRandomPoisson StatelessRandomUniform StatelessRandomUniformFullInt
        StatelessRandomUniformFullIntV2 StatelessRandomUniformInt StatelessRandomUniformIntV2
        StatelessRandomUniformV2 StatelessShuffle StatelessTruncatedNormal
        StatelessTruncatedNormalV2 TruncatedNormal
    """),
    "strings": _ops("""
        AsString DecodeBase64 EncodeBase64 ReduceJoin RegexFullMatch RegexReplace
        StaticRegexFullMatch StaticRegexReplace StringFormat StringJoin StringLength StringLower
        StringSplitV2 StringStrip StringToHashBucketFast StringToNumber StringUpper Substr
        UnicodeDecode UnicodeEncode UnicodeTranscode
    """),
    "in-memory datasets": _ops("""
        AnonymousIteratorV2 AnonymousIteratorV3 AnonymousRandomSeedGenerator AnonymousSeedGenerator
        AssertCardinalityDataset BatchDataset BatchDatasetV2 ConcatenateDataset DatasetCardinality
        DatasetToSingleElement DeleteIterator DeleteRandomSeedGenerator DeleteSeedGenerator
        DummySeedGenerator FilterDataset FinalizeDataset FlatMapDataset InterleaveDataset
        IteratorGetNext IteratorGetNextAsOptional IteratorGetNextSync MakeIterator
        MapAndBatchDataset MapDataset ModelDataset OptimizeDataset OptimizeDatasetV2
        OptionalFromValue OptionalGetValue OptionalHasValue OptionalNone OptionsDataset
        PaddedBatchDataset PaddedBatchDatasetV2 ParallelBatchDataset ParallelFilterDataset
        ParallelMapDataset ParallelMapDatasetV2 PrefetchDataset RangeDataset ReduceDataset
        RepeatDataset ScanDataset ShuffleDataset ShuffleDatasetV2 ShuffleDatasetV3 SkipDataset
        TakeDataset TakeWhileDataset TensorDataset TensorSliceDataset UnbatchDataset UniqueDataset
        WindowDataset ZipDataset
    """),
    # PrintV2 only to the standard streams or the log (its output_stream attribute is checked).
    "printing": _ops("PrintV2"),
    # Variables a computation creates for itself: VarHandleOp only with the anonymous shared name
    # (checked), so each run makes fresh variables that die with it and no two runs share one.
    "local variables": _ops("""
        AssignAddVariableOp AssignSubVariableOp AssignVariableOp ReadVariableOp ResourceGather
        ResourceScatterAdd ResourceScatterSub ResourceScatterUpdate VarHandleOp VarIsInitializedOp
    """),
}

# The shared name that makes a VarHandleOp create a new variable each time it runs, freed with
# its last handle (TensorFlow's ResourceHandle::ANONYMOUS_NAME; eager variables use it too).
ANONYMOUS_VARIABLE = b"cd2c89b7-88b7-44c8-ad83-06c2a9158347"

# A resource handle may come only from a VarHandleOp (anonymous): never as a constant or a graph input.
_DT_RESOURCE = 20  # tensorflow/core/framework/types.proto
_HANDLE_SOURCES = frozenset({"Const", "Placeholder", "PlaceholderWithDefault"})

# The output streams PrintV2 may use (a "file://…" stream would append to a file).
PRINT_STREAMS = frozenset({b"stderr", b"stdout", b"log(info)", b"log(warning)", b"log(error)"})

_ALL_ALLOWED = frozenset().union(*ALLOWED_OPS.values())

# Why some well-known ops are refused (the rest: "not a pure computation op").
_DENIED_REASONS = [
    (("ReadFile", "WriteFile", "MatchingFiles", "Save", "SaveV2", "SaveSlices", "Restore",
      "RestoreV2", "RestoreSlice", "MergeV2Checkpoints", "ImmutableConst", "ShardedFilename",
      "ShardedFilespec"), "it reads or writes files"),
    (("DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary",
      "DebugNumericSummaryV2", "CopyHost", "Copy"), "it writes debugger events"),
    (("PyFunc", "PyFuncStateless", "EagerPyFunc"), "it calls back into Python"),
    (("Abort",), "it ends the process"),
]
_DENIED_FRAGMENTS = [
    ("Summary", "it writes summaries (files)"),
    ("Reader", "it reads files"),
    ("Record", "it reads or writes record files"),
    ("FileSystem", "it touches the file system"),
    ("Variable", "it uses variables (state outside the computation)"),
    ("VarHandle", "it uses variables (state outside the computation)"),
    ("Resource", "it uses resources (state outside the computation)"),
    ("Queue", "it uses queues (state shared across calls)"),
    ("Table", "it uses lookup tables (state shared across calls)"),
    ("Sleep", "it sleeps"),
    ("Send", "it communicates with other devices or processes"),
    ("Recv", "it communicates with other devices or processes"),
    ("Collective", "it communicates with other devices or processes"),
    ("Cache", "it may cache data in files"),
    ("Snapshot", "it may write datasets to files"),
    ("Dataset", "it is not an in-memory dataset op (it may read files or services)"),
]


def allowed(op: str) -> bool:
    """Whether ``op`` (a TensorFlow op type name) is on the allowlist."""
    return op in _ALL_ALLOWED


def _reason(op: str) -> str:
    for names, reason in _DENIED_REASONS:
        if op in names:
            return reason
    for fragment, reason in _DENIED_FRAGMENTS:
        if fragment in op:
            return reason
    return "it is not on fedc's list of pure computation ops"


# --------------------------------------------------------------------------
# Reading the graph


@functools.lru_cache(maxsize=1)
def _meta_graph_class():
    """A protobuf class reading the op-bearing fields of TensorFlow's MetaGraphDef."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    FD = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="fedc_tensorflow_graph_subset.proto", package="fedc_tf_subset")
    file.syntax = "proto3"

    def message(name, fields, nested=()):
        m = file.message_type.add(name=name)
        for entry in nested:
            m.nested_type.add().CopyFrom(entry)
        for field_name, number, kind, label, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
        return m

    OPT, REP = FD.LABEL_OPTIONAL, FD.LABEL_REPEATED
    BYTES, MSG = FD.TYPE_BYTES, FD.TYPE_MESSAGE

    def attr_map_entry(name):
        entry = descriptor_pb2.DescriptorProto(name=name)
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=FD.TYPE_STRING, label=OPT)
        entry.field.add(name="value", number=2, type=MSG, label=OPT, type_name=".fedc_tf_subset.AttrValue")
        return entry

    # Field numbers as in tensorflow/core/framework/{attr_value,node_def,function,graph,op_def}.proto
    # and tensorflow/core/protobuf/meta_graph.proto. Strings are read as bytes: a payload's text
    # need not be UTF-8 for fedc to name what it holds.
    message("NameAttrList", [("name", 1, BYTES, OPT, ""), ("attr", 2, MSG, REP, ".fedc_tf_subset.NameAttrList.AttrEntry")],
            [attr_map_entry("AttrEntry")])
    message("ListValue", [("func", 9, MSG, REP, ".fedc_tf_subset.NameAttrList")])
    message("AttrValue", [("list", 1, MSG, OPT, ".fedc_tf_subset.ListValue"), ("s", 2, BYTES, OPT, ""),
                          ("type", 6, FD.TYPE_INT32, OPT, ""),  # a DataType enum (a varint on the wire)
                          ("func", 10, MSG, OPT, ".fedc_tf_subset.NameAttrList")])
    message("NodeDef", [("name", 1, BYTES, OPT, ""), ("op", 2, BYTES, OPT, ""),
                        ("attr", 5, MSG, REP, ".fedc_tf_subset.NodeDef.AttrEntry")], [attr_map_entry("AttrEntry")])
    message("OpDef", [("name", 1, BYTES, OPT, "")])
    message("FunctionDef", [("signature", 1, MSG, OPT, ".fedc_tf_subset.OpDef"),
                            ("node_def", 3, MSG, REP, ".fedc_tf_subset.NodeDef")])
    message("FunctionDefLibrary", [("function", 1, MSG, REP, ".fedc_tf_subset.FunctionDef")])
    message("GraphDef", [("node", 1, MSG, REP, ".fedc_tf_subset.NodeDef"),
                         ("library", 2, MSG, OPT, ".fedc_tf_subset.FunctionDefLibrary")])
    message("MetaGraphDef", [("graph_def", 2, MSG, OPT, ".fedc_tf_subset.GraphDef")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fedc_tf_subset.MetaGraphDef"))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _called_functions(attr_map) -> Iterator[str]:
    """The function names an op's attributes refer to (While's body, PartitionedCall's f, …)."""
    stack = list(attr_map.values())
    while stack:
        value = stack.pop()
        targets = list(value.list.func)
        if value.HasField("func"):
            targets.append(value.func)
        for target in targets:
            yield _text(target.name)
            stack.extend(target.attr.values())


def _parse(payload: bytes):
    meta = _meta_graph_class()()
    try:
        meta.ParseFromString(payload)
    except Exception as e:  # a malformed payload is data, not a crash
        raise FedcError(f"malformed TensorFlow payload: {e}") from None
    return meta.graph_def


def _nodes(graph) -> Iterator[tuple[Optional[str], object]]:
    yield from ((None, node) for node in graph.node)
    for function in graph.library.function:
        name = _text(function.signature.name)
        yield from ((name, node) for node in function.node_def)


def graph_ops(payload: bytes) -> dict[str, int]:
    """How many times each op occurs in a payload's graph and function library."""
    counts: dict[str, int] = {}
    for _, node in _nodes(_parse(payload)):
        op = _text(node.op)
        counts[op] = counts.get(op, 0) + 1
    return counts


def check_payload(payload: bytes, what: str) -> None:
    """Raises :class:`UnsafeTensorFlowError` if the graph of ``payload`` uses an op fedc does not run.

    ``what`` names the computation (e.g. ``"tf_computation 'f'"``) in the message.
    """
    graph = _parse(payload)
    defined = {_text(f.signature.name) for f in graph.library.function}
    calls: dict[Optional[str], set[str]] = {}  # function (None: the graph itself) -> the functions it calls
    for function, node in _nodes(graph):
        op = _text(node.op)
        callees = calls.setdefault(function, set())
        if op in defined:
            callees.add(op)
        where = f" (in its function {function})" if function else ""
        if op not in _ALL_ALLOWED and op not in defined:  # a node may call a library function by name
            raise UnsafeTensorFlowError(
                f"{what} uses the TensorFlow op {op}{where}, which fedc does not run: {_reason(op)}. "
                "fedc runs only pure computation ops (docs/security.md lists them), so that running a "
                "computation cannot touch the machine. If you trust this computation, load it with "
                "trusted=True (on the command line: --trusted)"
            )
        if op == "PrintV2":
            stream = node.attr["output_stream"].s if "output_stream" in node.attr else b"stderr"
            if stream not in PRINT_STREAMS:
                raise UnsafeTensorFlowError(
                    f"{what} prints to {_text(stream)!r}{where}: fedc lets TensorFlow print only to "
                    f"{', '.join(sorted(_text(s) for s in PRINT_STREAMS))} (a file stream would write "
                    "files). If you trust this computation, load it with trusted=True (--trusted)"
                )
        _check_state(op, node, what, where)
        for callee in _called_functions(node.attr):
            if callee not in defined:
                raise UnsafeTensorFlowError(
                    f"{what} calls the function {callee!r}{where}, which its graph does not define: fedc "
                    "runs only graphs that carry every function they call"
                )
            callees.add(callee)
    _check_calls(calls, what)


def _check_state(op: str, node, what: str, where: str) -> None:
    """Refuses state a graph did not create for itself: a named variable, or a resource handle from outside.

    A graph may use variables only through its own anonymous ``VarHandleOp``s
    (fresh on every run); a named one is shared by every graph in the process
    naming it, and a handle given as a constant or an input could name another
    computation's variable.
    """
    if op in _HANDLE_SOURCES and "dtype" in node.attr and node.attr["dtype"].type == _DT_RESOURCE:
        problem = (f"has a {op} of a TensorFlow resource handle{where} ({_text(node.name)!r}): a handle given "
                   "from outside names state outside the computation (another computation's variables)")
    elif op == "VarHandleOp" and (node.attr["shared_name"].s != ANONYMOUS_VARIABLE or node.attr["container"].s):
        shared = node.attr["shared_name"].s
        problem = (f"uses the TensorFlow op VarHandleOp{where} for the variable {_text(shared or node.name)!r}, "
                   "which lives outside the computation (a named variable is shared by every run in the process)")
    else:
        return
    raise UnsafeTensorFlowError(
        f"{what} {problem}. fedc runs only variables a computation creates for itself (anonymous, made fresh "
        "on every run, as @fedc.tf_computation traces them). If you trust this computation, load it with "
        "trusted=True (--trusted)"
    )


def _check_calls(calls: dict[Optional[str], set[str]], what: str) -> None:
    """Refuses function calls that recurse or nest more than MAX_NESTING deep.

    TensorFlow instantiates a called function, and the functions it calls, by
    recursing on the C stack: a function that calls itself (directly or
    through others) or a chain of thousands of calls crashes the process
    instead of raising an error. Iterative, so the check itself cannot
    overflow.
    """
    depth: dict[str, int] = {}  # function -> how deeply calls nest below it (1: it calls nothing)
    for root in calls:
        if root is None or root in depth:
            continue
        path = [root]  # the chain of calls being followed
        pending = [iter(sorted(calls.get(root, ())))]
        while pending:
            callee = next(pending[-1], None)
            if callee is None:
                done = path.pop()
                pending.pop()
                depth[done] = 1 + max((depth[c] for c in calls.get(done, ())), default=0)
                if depth[done] > MAX_NESTING:
                    raise UnsafeTensorFlowError(
                        f"{what} nests TensorFlow function calls {depth[done]} deep (from its function {done}), "
                        f"more than {MAX_NESTING} (fedc.limits.MAX_NESTING): TensorFlow would overflow its stack"
                    )
                continue
            if callee in depth:
                continue
            if callee in path:
                cycle = " -> ".join(path[path.index(callee):] + [callee])
                raise UnsafeTensorFlowError(
                    f"{what} has TensorFlow functions that call themselves ({cycle}): TensorFlow would recurse "
                    "until it crashes, so fedc refuses recursive graphs"
                )
            path.append(callee)
            pending.append(iter(sorted(calls.get(callee, ()))))


# --------------------------------------------------------------------------
# Trust


# Content hashes of the payloads admitted in this process: trusted ones, and ones that passed the check.
_admitted: set[str] = set()
_lock = threading.Lock()


def content_hash(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def trust(digest: str) -> None:
    """Admits the payload with content hash ``digest`` for this process, whatever ops it uses."""
    with _lock:
        _admitted.add(digest)


def is_trusted(digest: str) -> bool:
    """Whether the payload with content hash ``digest`` was admitted (trusted, or checked) in this process."""
    return digest in _admitted


_trusting = 0  # how many trusting() blocks are open


@contextlib.contextmanager
def trusting():
    """While the block runs, every payload entering fedc is trusted (``fedc … --trusted`` uses this).

    For code that loads computations through layers that take no ``trusted``
    argument, e.g. a ``.fed`` file whose externs trace ``tf_computation``s.
    Process-wide; the payloads admitted meanwhile stay trusted afterwards.
    """
    global _trusting
    with _lock:
        _trusting += 1
    try:
        yield
    finally:
        with _lock:
            _trusting -= 1


def admit(payload: bytes, what: str, trusted: bool = False, digest: Optional[str] = None) -> None:
    """Admits a payload entering fedc: trusts it if ``trusted``, else checks it (once per process)."""
    digest = digest or content_hash(payload)
    if trusted or _trusting or digest in _admitted:
        trust(digest)
        return
    check_payload(payload, what)
    trust(digest)
