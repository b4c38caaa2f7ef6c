"""A computation from outside cannot touch the machine: TensorFlow payloads run only allowlisted ops."""

import pathlib
import sys
import uuid

import numpy as np
import pytest

import fedc
from fedc import ir, tensorflow_graphs, tensorflow_ops
from fedc.cli import main as fedc_main
from fedc.errors import UnsafeTensorFlowError
from fedc.types import FunctionType, TensorType

tf = pytest.importorskip("tensorflow")

F32_TO_F32 = FunctionType(TensorType(np.float32), TensorType(np.float32))
DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "security.md"


def graph_payload(build) -> bytes:
    """A payload (float32 -> float32) from a TF1-style graph: never admitted by fedc before."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [], name="x")
        y = build(x)
    return tensorflow_graphs.make_payload(graph.as_graph_def(), [x.name], [y.name])


def after(effect, x):
    with tf.control_dependencies([effect]):
        return tf.identity(x)


def module_of(payload: bytes, name: str = "step") -> ir.Module:
    return ir.Module(name, [(name, ir.Compiled("tensorflow", payload, F32_TO_F32, name))])


def unique_path(tmp_path) -> pathlib.Path:
    # A fresh path makes a fresh payload, which no earlier test has admitted.
    return tmp_path / f"written-{uuid.uuid4().hex}.txt"


# One hostile graph per denied class: (what it does, the op named in the error, builder).
def hostile(tmp_path):
    target = unique_path(tmp_path)
    return target, [
        ("writes a file", "WriteFile",
         lambda x: after(tf.io.write_file(str(target), tf.strings.as_string(x)), x)),
        ("appends inputs to a file", "prints to 'file://",
         lambda x: after(tf.print(x, output_stream="file://" + str(target)), x)),
        ("reads a file", "ReadFile",
         lambda x: x + tf.cast(tf.strings.length(tf.io.read_file("/etc/os-release")), tf.float32)),
        ("lists a directory", "MatchingFiles",
         lambda x: x + tf.cast(tf.size(tf.io.matching_files("/*")), tf.float32)),
        ("writes debugger events", "DebugIdentityV2",
         lambda x: tf.raw_ops.DebugIdentityV2(input=x, debug_urls=["file://" + str(target)])),
        ("does it inside a function of the library", "WriteFile (in its function",
         lambda x: tf.function(lambda v: after(tf.io.write_file(str(target), tf.strings.as_string(v)), v))(x)),
    ]


def test_every_allowlisted_op_is_a_tensorflow_op():
    from tensorflow.python.framework import op_def_registry

    unknown = sorted(op for ops in tensorflow_ops.ALLOWED_OPS.values() for op in ops if op_def_registry.get(op) is None)
    assert unknown == []


def test_the_allowlist_is_documented_op_by_op():
    text = DOCS.read_text()
    for category, ops in tensorflow_ops.ALLOWED_OPS.items():
        assert category in text
        missing = sorted(op for op in ops if f"`{op}`" not in text)
        assert missing == [], f"docs/security.md lacks {category} ops {missing}"


def test_the_reader_sees_the_same_ops_as_tensorflow():
    @fedc.tf_computation(fedc.SequenceType(np.float32))
    def total(ds):
        return ds.reduce(np.float32(0), lambda a, b: a + b)

    payload = total.ir.payload
    meta = tf.compat.v1.MetaGraphDef.FromString(payload)
    expected: dict = {}
    nodes = list(meta.graph_def.node) + [n for f in meta.graph_def.library.function for n in f.node_def]
    for node in nodes:
        expected[node.op] = expected.get(node.op, 0) + 1
    assert tensorflow_ops.graph_ops(payload) == expected
    assert "ReduceDataset" in expected


def test_denied_graphs_are_refused_wherever_they_enter(tmp_path):
    target, cases = hostile(tmp_path)
    for what, named, build in cases:
        payload = graph_payload(build)
        module = module_of(payload)
        # Parsing textual IR: located at the payload's hash.
        with pytest.raises(UnsafeTensorFlowError) as info:
            ir.parse_module(ir.print_module(module), "hostile.fedir")
        assert named in info.value.message and "'step'" in info.value.message, what
        assert info.value.location.file == "hostile.fedir"
        # Deserializing protobuf.
        with pytest.raises(UnsafeTensorFlowError) as info:
            ir.deserialize(ir.serialize(module))
        assert named in info.value.message, what
        # Running a node built by hand.
        with pytest.raises(UnsafeTensorFlowError) as info:
            fedc.Computation(module, "step")(1.0)
        assert named in info.value.message, what
        assert not target.exists(), what


def test_a_graph_calling_a_function_it_does_not_carry_is_refused():
    payload = graph_payload(lambda x: tf.identity(x))
    meta = tf.compat.v1.MetaGraphDef.FromString(payload)
    call = meta.graph_def.node.add(name="call", op="PartitionedCall")
    call.attr["f"].func.name = "defined_elsewhere"
    with pytest.raises(UnsafeTensorFlowError, match="defined_elsewhere"):
        tensorflow_ops.check_payload(meta.SerializeToString(), "the graph")


def library_payload(calls: dict, top: str) -> bytes:
    """A graph calling ``top`` from a library in which function f calls each function of ``calls[f]``."""
    meta = tf.compat.v1.MetaGraphDef()
    for name, callees in calls.items():
        function = meta.graph_def.library.function.add()
        function.signature.name = name
        for callee in callees:
            function.node_def.add(name=f"call_{callee}", op="PartitionedCall").attr["f"].func.name = callee
    meta.graph_def.node.add(name="top", op="PartitionedCall").attr["f"].func.name = top
    return meta.SerializeToString()


def test_recursive_and_too_deeply_nested_function_calls_are_refused():
    # TensorFlow recurses on the C stack through nested calls: these would crash the process when run.
    with pytest.raises(UnsafeTensorFlowError, match=r"call themselves \(f -> g -> f\)"):
        tensorflow_ops.check_payload(library_payload({"f": ["g"], "g": ["f"]}, "f"), "the graph")
    with pytest.raises(UnsafeTensorFlowError, match=r"call themselves \(h -> h\)"):
        tensorflow_ops.check_payload(library_payload({"h": ["h"]}, "h"), "the graph")
    limit = fedc.limits.MAX_NESTING
    chain = {f"f{i}": [f"f{i + 1}"] for i in range(limit)}
    chain[f"f{limit}"] = []
    with pytest.raises(UnsafeTensorFlowError, match=f"nests TensorFlow function calls {limit + 1} deep"):
        tensorflow_ops.check_payload(library_payload(chain, "f0"), "the graph")
    del chain[f"f{limit}"]
    chain[f"f{limit - 1}"] = []
    tensorflow_ops.check_payload(library_payload(chain, "f0"), "the graph")  # exactly at the limit


def test_a_recursive_graph_is_refused_before_it_runs():
    @tf.function(autograph=False)
    def inner(v):
        return v * 2.0

    @tf.function(autograph=False)
    def outer(v):
        return inner(v) + 1.0

    meta = tf.compat.v1.MetaGraphDef.FromString(graph_payload(outer))
    functions = {f.signature.name: f for f in meta.graph_def.library.function}
    callee = next(n for f in functions.values() for n in f.node_def if n.op.endswith("PartitionedCall"))
    inner_def = functions[callee.attr["f"].func.name]
    caller = next(name for name, f in functions.items() if f is not inner_def)
    back = inner_def.node_def.add(name="back", op="PartitionedCall")
    back.CopyFrom(callee)
    back.name = "back"
    back.attr["f"].func.name = caller
    del back.input[:]
    back.input.append(inner_def.signature.input_arg[0].name)
    for node in inner_def.node_def:
        if node.op == "Identity":
            node.input.append("^back")
    module = module_of(meta.SerializeToString())
    with pytest.raises(UnsafeTensorFlowError, match="call themselves"):
        ir.deserialize(ir.serialize(module))
    with pytest.raises(UnsafeTensorFlowError, match="call themselves"):
        fedc.Computation(module, "step")(1.0)  # before this check, a segmentation fault


def test_malformed_payloads_are_located_errors_not_crashes():
    module = module_of(b"\xff\xff not a graph")
    with pytest.raises(fedc.ParseError, match="malformed TensorFlow payload") as info:
        ir.parse_module(ir.print_module(module), "bad.fedir")
    assert info.value.location.file == "bad.fedir"
    with pytest.raises(fedc.SerializationError, match="malformed TensorFlow payload"):
        ir.deserialize(ir.serialize(module))


def test_tracing_tells_the_author_and_trusted_admits(tmp_path):
    target = unique_path(tmp_path)
    with pytest.raises(UnsafeTensorFlowError) as info:
        @fedc.tf_computation(np.float32)
        def log_value(x):
            tf.io.write_file(str(target), tf.strings.as_string(x))
            return x

    assert "tf_computation 'log_value'" in info.value.message and "WriteFile" in info.value.message
    assert "trusted=True" in info.value.message

    @fedc.tf_computation(np.float32, trusted=True)
    def log_trusted(x):
        tf.io.write_file(str(target), tf.strings.as_string(x))
        return x

    assert log_trusted(2.5) == 2.5
    assert target.read_text().startswith("2.5")


def test_printing_to_the_standard_streams_is_allowed(capfd):
    @fedc.tf_computation(np.float32)
    def noisy(x):
        tf.print("value:", x, output_stream=sys.stderr)
        return x * 2.0

    assert noisy(1.5) == 3.0
    assert "value: 1.5" in capfd.readouterr().err


def test_trusted_loading_admits_for_the_process(tmp_path):
    target = unique_path(tmp_path)
    payload = graph_payload(lambda x: after(tf.io.write_file(str(target), tf.strings.as_string(x)), x))
    text = ir.print_module(module_of(payload))
    module = ir.parse_module(text, trusted=True)
    assert fedc.Computation(module, "step")(4.0) == 4.0
    assert target.exists()
    # Admitted once, the same payload loads in this process without the flag.
    assert ir.deserialize(ir.serialize(module)) == module


def test_fedc_run_refuses_and_trusted_runs(tmp_path, capsys):
    target = unique_path(tmp_path)
    payload = graph_payload(lambda x: after(tf.io.write_file(str(target), tf.strings.as_string(x)), x))
    path = tmp_path / "hostile.fedpb"
    path.write_bytes(ir.serialize(module_of(payload)))
    args = tmp_path / "args.json"
    args.write_text("1.0")
    assert fedc_main(["run", str(path), "--args", str(args)]) == 2
    err = capsys.readouterr().err
    assert "WriteFile" in err and "--trusted" in err and "Traceback" not in err
    assert not target.exists()
    assert fedc_main(["run", str(path), "--args", str(args), "--trusted"]) == 0
    assert target.exists()


def test_fedc_run_timeout_ends_a_loop_that_never_ends(tmp_path):
    import subprocess
    import sys
    import time

    def forever(x):
        return tf.while_loop(lambda v: v > -1.0, lambda v: v + 1.0, [tf.abs(x)])[0]

    path = tmp_path / "forever.fedpb"
    path.write_bytes(ir.serialize(module_of(graph_payload(forever))))
    args = tmp_path / "args.json"
    args.write_text("1.0")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "fedc", "run", str(path), "--args", str(args), "--timeout", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "--timeout 3 s" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_fedc_run_refuses_a_meaningless_timeout(value, tmp_path, capsys):
    path = tmp_path / "x.fed"
    path.write_text("computation f(x: float32@SERVER) -> float32@SERVER {\n  return x\n}\n")
    assert fedc_main(["run", str(path), "--timeout", value]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_loaded_payloads_with_loops_run_on_the_tf_backend_in_a_fresh_process(tmp_path):
    """A payload's own functions (a while_loop's body and condition) are found when it runs inside a traced
    function, in a process that never made them — and two payloads' equally named functions do not collide."""
    import subprocess
    import sys

    def count_to(limit):
        return lambda x: tf.while_loop(lambda v: v < limit, lambda v: v + 1.0, [tf.abs(x)])[0]

    for name, limit in (("ten", 10.0), ("twenty", 20.0)):  # both graphs name their functions while_cond_3, …
        (tmp_path / f"{name}.fedpb").write_bytes(ir.serialize(module_of(graph_payload(count_to(limit)))))
    code = ("import numpy as np, fedc, sys\n"
            "for name in ('ten', 'twenty'):\n"
            "    m = fedc.ir.deserialize(open(sys.argv[1] + f'/{name}.fedpb', 'rb').read())\n"
            "    print(fedc.context.get_backend('tf').compile(m, 'step')(np.float32(1.0)))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["10.0", "20.0"]
