"""TensorFlow payloads that must never run: one per denied op class, hidden in every place a graph has.

A *recipe* says what to build (runs in the worker, which has TensorFlow):

``op``      a denied op class from :data:`DENIED` (writes a file, reads one,
            calls Python, ends the process, uses a variable, a queue, a
            table, a collective, a file-backed dataset, …), or a structural
            trick from :data:`TRICKS` (a library function named like a
            denied op, functions that call each other, a call chain
            thousands deep, a call of a function the graph does not carry,
            ``PrintV2`` to a file stream spelled in odd ways);
``where``   where the op sits: the graph itself, a library function, a
            function called by a function, a ``cond`` branch, a
            ``while_loop`` body, a ``Dataset.map`` function;
``entry``   how it reaches fedc: textual IR, protobuf, the Python API
            (running a hand-built node), ``@fedc.tf_computation`` tracing,
            or ``fedc run`` on a ``.fedpb``;
``bytes``   optionally, byte-level damage to the payload (bit flips, a cut).

Each denied payload, if it ran, would touch a file in the case's sandbox
(``canary``), read ``secret.txt`` into its result, end or hang the worker —
so an admitted one shows up as a ``file`` finding, a crash or a hang. fedc
must refuse every undamaged denied payload with a ``FedcError``; a denied
payload that runs is a ``file`` outcome even if it touched nothing.

``python -m fuzz.tf_payloads case.json`` (from ``tests/``) replays a saved case.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys

import numpy as np

SECRET = "the content of a file fedc was not asked to read\n"
CANARY = "canary.out"
WHERES = ["graph", "function", "nested-function", "cond", "while", "dataset-map"]
ENTRIES = ["text", "proto", "api", "trace", "cli"]


def _tf():
    import tensorflow as tf

    return tf


def _after(effect, x):
    tf = _tf()
    with tf.control_dependencies([effect]):
        return tf.identity(x)


def _plus_length(x, strings):
    tf = _tf()
    return x + tf.cast(tf.reduce_sum(tf.strings.length(strings)), tf.float32)


def _summary(x, ctx):
    tf = _tf()
    writer = tf.raw_ops.SummaryWriter(shared_name="fuzz", container="")
    create = tf.raw_ops.CreateSummaryFileWriter(writer=writer, logdir=ctx["canary"] + ".d", max_queue=1,
                                                flush_millis=1, filename_suffix=".v2")
    with tf.control_dependencies([create]):
        write = tf.raw_ops.WriteScalarSummary(writer=writer, step=tf.constant(0, tf.int64), tag="x", value=x)
    with tf.control_dependencies([write]):
        flush = tf.raw_ops.FlushSummaryWriter(writer=writer)
    return _after(flush, x)


def _reader(x, ctx):
    tf = _tf()
    queue = tf.raw_ops.FIFOQueueV2(component_types=[tf.string], capacity=1)
    enqueue = tf.raw_ops.QueueEnqueueV2(handle=queue, components=[tf.constant(ctx["secret"])])
    reader = tf.raw_ops.WholeFileReaderV2()
    with tf.control_dependencies([enqueue]):
        _, value = tf.raw_ops.ReaderReadV2(reader_handle=reader, queue_handle=queue)
    return _plus_length(x, value)


def _variable(x, ctx):
    tf = _tf()
    handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="fuzz_v")
    assign = tf.raw_ops.AssignVariableOp(resource=handle, value=x)
    with tf.control_dependencies([assign]):
        return tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32)


def _table(x, ctx):
    tf = _tf()
    table = tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.float32, shared_name="fuzz_t")
    insert = tf.raw_ops.LookupTableInsertV2(table_handle=table, keys=tf.constant(["k"]), values=tf.reshape(x, [1]))
    with tf.control_dependencies([insert]):
        found = tf.raw_ops.LookupTableFindV2(table_handle=table, keys=tf.constant(["k"]), default_value=tf.constant(0.0))
    return tf.reduce_sum(found)


def _collective(x, ctx):
    tf = _tf()
    # Waits for the other members of a group that never come: it would hang the run.
    return tf.raw_ops.CollectiveReduceV2(input=x, group_size=tf.constant(2), group_key=tf.constant(7),
                                         instance_key=tf.constant(7), ordering_token=[], merge_op="Add",
                                         final_op="Id")


def _dataset_read(kind):
    def build(x, ctx):
        tf = _tf()
        files = tf.constant([ctx["secret"]])
        if kind == "text":
            ds = tf.data.TextLineDataset(files)
        elif kind == "record":
            ds = tf.data.FixedLengthRecordDataset(files, record_bytes=1)
        else:
            ds = tf.data.TFRecordDataset(files)
        return _plus_length(x, ds.reduce(tf.constant(""), lambda a, b: a + b))

    return build


def _dataset_write(kind):
    def build(x, ctx):
        tf = _tf()
        ds = tf.data.Dataset.from_tensors(x)
        if kind == "cache":
            ds = ds.cache(ctx["canary"])
        else:
            ds = ds.snapshot(ctx["canary"] + ".snap")
        return ds.reduce(tf.constant(0.0), lambda a, b: a + b)

    return build


def _py(kind):
    def build(x, ctx):
        tf = _tf()
        canary = ctx["canary"]

        def touch(v):
            with open(canary, "w") as f:
                f.write("ran")
            return v

        if kind == "numpy":
            y = tf.numpy_function(touch, [x], tf.float32)
        else:
            y = tf.py_function(touch, [x], tf.float32)
        return tf.reshape(y, [])

    return build


def _raw_node(op, attrs=None):
    """A node of op type ``op`` that TensorFlow would run for its effect (hand-written NodeDef)."""

    def build(x, ctx):
        tf = _tf()
        return _after(tf.no_op(name="raw_" + op.strip("_")), x)

    build.raw_op = (op, attrs or {})
    return build


#: (class, the op fedc must name, builder(x, ctx) -> y)
DENIED = [
    ("writes a file", "WriteFile",
     lambda x, c: _after(_tf().io.write_file(c["canary"], _tf().strings.as_string(x)), x)),
    ("reads a file", "ReadFile", lambda x, c: _plus_length(x, _tf().io.read_file(c["secret"]))),
    ("lists files", "MatchingFiles", lambda x, c: _plus_length(x, _tf().io.matching_files(c["sandbox"] + "/*"))),
    ("saves a checkpoint", "SaveV2",
     lambda x, c: _after(_tf().raw_ops.SaveV2(prefix=c["canary"], tensor_names=["x"], shape_and_slices=[""],
                                              tensors=[x]), x)),
    ("restores a checkpoint", "RestoreV2",
     lambda x, c: x + _tf().reshape(_tf().raw_ops.RestoreV2(prefix=c["sandbox"] + "/ckpt", tensor_names=["x"],
                                                            shape_and_slices=[""], dtypes=[_tf().float32])[0], [])),
    ("prints to a file", "prints to 'file://",
     lambda x, c: _after(_tf().print(x, output_stream="file://" + c["canary"]), x)),
    ("writes debugger events", "DebugIdentityV2",
     lambda x, c: _tf().raw_ops.DebugIdentityV2(input=x, debug_urls=["file://" + c["canary"] + ".dbg"])),
    ("calls Python (numpy_function)", "PyFunc", _py("numpy")),
    ("calls Python (py_function)", "EagerPyFunc", _py("eager")),
    ("ends the process", "Abort", lambda x, c: _after(_tf().raw_ops.Abort(error_msg="fuzz"), x)),
    ("writes summaries", "SummaryWriter", _summary),
    ("reads files with a reader and a queue", "FIFOQueueV2", _reader),
    ("uses a variable", "VarHandleOp", _variable),
    ("uses a lookup table", "HashTableV2", _table),
    ("talks to other processes (collective)", "CollectiveReduceV2", _collective),
    ("reads a text file dataset", "TextLineDataset", _dataset_read("text")),
    ("reads a record file dataset", "FixedLengthRecordDataset", _dataset_read("record")),
    ("reads a TFRecord dataset", "TFRecordDataset", _dataset_read("tfrecord")),
    ("caches a dataset in a file", "CacheDataset", _dataset_write("cache")),
    ("snapshots a dataset to files", "Snapshot", _dataset_write("snapshot")),
    ("sleeps", "Sleep", _raw_node("SleepDataset")),
    ("sends to another device", "_Send", _raw_node("_Send", {"tensor_name": "x", "send_device": "/cpu:0"})),
    ("receives from another device", "_Recv", _raw_node("_Recv", {"tensor_name": "x"})),
    ("sets file system options", "FileSystemSetConfiguration", _raw_node("FileSystemSetConfiguration")),
    ("maps a file into memory", "ImmutableConst", _raw_node("ImmutableConst", {"memory_region_name": "/etc/passwd"})),
    ("is an op fedc does not know", "FuzzUnknownOp", _raw_node("FuzzUnknownOp")),
    ("is not a pure computation op (Timestamp)", "Timestamp", lambda x, c: x + _tf().cast(_tf().raw_ops.Timestamp(), _tf().float32) * 0),
]
DENIED_CLASSES = [name for name, _, _ in DENIED]

#: Structural tricks on an allowed payload, each with whether fedc must refuse it.
TRICKS = [
    "function-named-like-denied-op",  # TF refuses to load it; the check may admit it
    "call-cycle",                     # two library functions that call each other
    "self-call",                      # a function that calls itself
    "call-chain-999",                 # 999 functions each calling the next, and the leaf: at the limit
    "call-chain-10000",               # past it (TensorFlow crashes near 7,000)
    "missing-function",               # a call of a function the graph does not carry
    "printv2-streams",                # PrintV2 with a file stream spelled oddly
    "op-name-bytes",                  # an op name with non-UTF-8 bytes
    "runtime-assert",                 # allowed ops that fail at run time
    "signature-mismatch",             # a signature naming tensors the graph lacks
]


def warm_up() -> None:
    tf = _tf()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.placeholder(tf.float32, [], name="x")


def _wrap(where: str, build, ctx):
    """``build`` placed ``where``; returns a function x -> y to call inside a graph."""
    tf = _tf()
    if where == "graph":
        return lambda x: build(x, ctx)
    if where == "function":
        return lambda x: tf.function(lambda v: build(v, ctx), autograph=False)(x)
    if where == "nested-function":
        inner = tf.function(lambda v: build(v, ctx), autograph=False)
        return lambda x: tf.function(lambda v: inner(v) + 0.0, autograph=False)(x)
    if where == "cond":
        return lambda x: tf.cond(x > -1e30, lambda: build(x, ctx), lambda: x)
    if where == "while":
        return lambda x: tf.while_loop(lambda i, v: i < 1, lambda i, v: (i + 1, build(v, ctx)),
                                       [tf.constant(0), x])[1]
    if where == "dataset-map":
        return lambda x: tf.data.Dataset.from_tensors(x).map(lambda v: build(v, ctx)).reduce(
            tf.constant(0.0), lambda a, b: a + b)
    raise ValueError(where)


def _graph_payload(fn) -> bytes:
    from fedc import tensorflow_graphs

    tf = _tf()
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [], name="x")
        y = tf.identity(fn(x), name="y")
    return tensorflow_graphs.make_payload(graph.as_graph_def(), [x.name], [y.name])


def _add_raw_node(payload: bytes, op: str, attrs: dict, where: str) -> bytes:
    """The payload with a hand-written node of type ``op`` (top graph or a library function)."""
    tf = _tf()
    meta = tf.compat.v1.MetaGraphDef.FromString(payload)
    functions = list(meta.graph_def.library.function)
    if where != "graph" and functions:
        target = functions[-1].node_def
    else:
        target = meta.graph_def.node
    node = target.add(name="fuzz_" + op.strip("_"), op=op)
    for key, value in attrs.items():
        node.attr[key].s = value.encode()
    return meta.SerializeToString()


def denied_payload(recipe: dict, ctx: dict) -> bytes:
    name, _, build = DENIED[DENIED_CLASSES.index(recipe["op"])]
    payload = _graph_payload(_wrap(recipe["where"], build, ctx))
    if hasattr(build, "raw_op"):
        op, attrs = build.raw_op
        payload = _add_raw_node(payload, op, attrs, recipe["where"])
    return payload


def _function_calls(meta, caller, callee_name: str, tf) -> None:
    """Adds to FunctionDef ``caller`` a call of ``callee_name`` that its result depends on."""
    arg = caller.signature.input_arg[0].name
    call = caller.node_def.add(name="call_" + re.sub(r"[^A-Za-z0-9_]", "_", callee_name)[:60], op="PartitionedCall")
    call.input.append(arg)
    call.attr["Tin"].list.type.append(tf.float32.as_datatype_enum)
    call.attr["Tout"].list.type.append(tf.float32.as_datatype_enum)
    call.attr["f"].func.name = callee_name
    for node in caller.node_def:
        if node.op == "Identity":
            node.input.append(f"^{call.name}")


def trick_payload(recipe: dict, ctx: dict) -> bytes:
    tf = _tf()
    trick = recipe["trick"]
    if trick == "runtime-assert":
        choice = recipe.get("variant", 0) % 4

        def build(x):
            if choice == 0:
                return _after(tf.debugging.Assert(x < -1.0, [x]), x)
            if choice == 1:
                return tf.debugging.check_numerics(x / 0.0 * 0.0, "nan")
            if choice == 2:
                three = tf.stack([tf.cast(x * 0.0, tf.int32) + 3])  # known only at run time
                return tf.reduce_sum(tf.reshape(tf.fill(three, x), [2, 2]))
            return tf.gather(tf.fill([2], x), 5)

        return _graph_payload(build)
    base = _graph_payload(_wrap("nested-function", lambda v, c: v * 2.0, ctx))
    meta = tf.compat.v1.MetaGraphDef.FromString(base)
    functions = list(meta.graph_def.library.function)
    if trick == "function-named-like-denied-op":
        fn = meta.graph_def.library.function.add()
        fn.CopyFrom(functions[-1])
        fn.signature.name = "WriteFile"
        node = meta.graph_def.node.add(name="w", op="WriteFile")
        node.input.extend(["x", "x"])
    elif trick in ("call-cycle", "self-call"):
        outer = next(f for f in meta.graph_def.library.function
                     if any(n.op in ("PartitionedCall", "StatefulPartitionedCall") for n in f.node_def))
        inner_name = next(n.attr["f"].func.name for n in outer.node_def if n.op in ("PartitionedCall", "StatefulPartitionedCall"))
        inner = next(f for f in meta.graph_def.library.function if f.signature.name == inner_name)
        if trick == "call-cycle":
            _function_calls(meta, inner, outer.signature.name, tf)
        else:
            _function_calls(meta, inner, inner.signature.name, tf)
    elif trick.startswith("call-chain"):
        count = int(trick.rsplit("-", 1)[1])
        leaf = next(f for f in meta.graph_def.library.function
                    if not any(n.op in ("PartitionedCall", "StatefulPartitionedCall") for n in f.node_def))
        previous = leaf.signature.name
        for i in range(count):
            fn = meta.graph_def.library.function.add()
            fn.CopyFrom(leaf)
            fn.signature.name = f"chain_{i}"
            _function_calls(meta, fn, previous, tf)
            previous = fn.signature.name
        top = next(n for n in meta.graph_def.node if n.op in ("PartitionedCall", "StatefulPartitionedCall"))
        top.attr["f"].func.name = previous
    elif trick == "missing-function":
        top = next(n for n in meta.graph_def.node if n.op in ("PartitionedCall", "StatefulPartitionedCall"))
        top.attr["f"].func.name = "not_in_the_library"
    elif trick == "printv2-streams":
        streams = ["file://" + ctx["canary"], "FILE://" + ctx["canary"], " file://" + ctx["canary"],
                   "stderr\x00file://" + ctx["canary"], "stdout ", "log(info)x", ctx["canary"], "file:" + ctx["canary"]]
        stream = streams[recipe.get("variant", 0) % len(streams)]
        payload = _graph_payload(lambda x: _after(tf.print(x, output_stream=sys.stderr), x))
        meta = tf.compat.v1.MetaGraphDef.FromString(payload)
        for node in meta.graph_def.node:
            if node.op == "PrintV2":
                node.attr["output_stream"].s = stream.encode()
    elif trick == "op-name-bytes":
        # TensorFlow's classes refuse a name that is not UTF-8: write one of the same length, then patch the bytes.
        meta.graph_def.node.add(name="odd", op="WriteQFile")
        return meta.SerializeToString().replace(b"WriteQFile", b"Write\xffFile")
    elif trick == "signature-mismatch":
        meta.signature_def["serving_default"].inputs["p0"].name = "nowhere:0"
    return meta.SerializeToString()


# Tricks after which fedc must refuse the payload (before TensorFlow sees it).
MUST_REFUSE = {"call-cycle", "self-call", "call-chain-10000", "missing-function", "op-name-bytes"}


def _damage(payload: bytes, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(payload)
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 6)):
            p = rng.randrange(len(data))
            data[p] ^= 1 << rng.randrange(8)
        return bytes(data), "bits flipped"
    cut = rng.randrange(len(data))
    return bytes(data[:cut]), f"cut at {cut}"


def build(recipe: dict, sandbox: str) -> tuple[bytes, bool]:
    """(payload, whether fedc must refuse it)."""
    ctx = {"canary": os.path.join(sandbox, CANARY), "secret": os.path.join(sandbox, "secret.txt"), "sandbox": sandbox}
    if "op" in recipe:
        payload, refuse = denied_payload(recipe, ctx), True
    else:
        payload, refuse = trick_payload(recipe, ctx), recipe["trick"] in MUST_REFUSE
    if recipe.get("bytes") is not None:
        payload, _ = _damage(payload, random.Random(recipe["bytes"]))
        refuse = False
    return payload, refuse


def run_recipe(case: dict, sandbox: str) -> dict:
    from fuzz import actions

    import fedc
    from fedc import ir
    from fedc.types import FunctionType, TensorType

    recipe = case["recipe"]
    with actions.unwatched():  # building the graph is the harness's work, not fedc's
        status, built = actions.attempt("build the payload", lambda: build(recipe, sandbox))
    if status != "ok":
        return {"outcome": "harness", "detail": f"could not build the payload: {built}"}
    payload, must_refuse = built
    f32 = TensorType(np.float32)
    module = ir.Module("step", [("step", ir.Compiled("tensorflow", payload, FunctionType(f32, f32), "step"))])
    entry = recipe["entry"]
    if entry == "text":
        text = ir.print_module(module)
        status, value = actions.attempt("parse_module", lambda: ir.parse_module(text, "payload.fedir"))
        if status == "ok":
            status, value = actions.attempt("run", lambda: fedc.Computation(value, "step")(np.float32(1.0)))
    elif entry == "proto":
        data = ir.serialize(module)
        status, value = actions.attempt("deserialize", lambda: ir.deserialize(data))
        if status == "ok":
            status, value = actions.attempt("run", lambda: fedc.Computation(value, "step")(np.float32(1.0)))
    elif entry == "api":
        status, value = actions.attempt("run", lambda: fedc.Computation(module, "step")(np.float32(1.0)))
    elif entry == "trace":
        with actions.unwatched():  # tracing runs the user's Python (TensorFlow's autograph writes to /tmp)
            status, value = actions.attempt("tf_computation", lambda: _trace(recipe, sandbox))
        if status == "ok":
            status, value = actions.attempt("run", lambda: value(np.float32(1.0)))
    else:
        with actions.unwatched():
            with open(os.path.join(sandbox, "step.fedpb"), "wb") as f:
                f.write(ir.serialize(module))
            with open(os.path.join(sandbox, "args.json"), "w") as f:
                f.write("1.0")
        code, stdout, stderr, escaped = actions.call_cli(["run", "step.fedpb", "--args", "args.json", "--timeout", "20"])
        result = actions.judge_cli(["run"], code, stdout, stderr, escaped)
        result["stderr"] = stderr[-2000:]
        if result["outcome"] == "ok" and must_refuse:
            result.update(outcome="file", detail=f"a payload fedc must refuse ran: {stdout[:200]!r}")
        return result
    if status == "escape":
        return value
    if status == "error":
        return {"outcome": "error", "detail": f"{type(value).__name__}: {actions._short(value, 300)}"}
    if must_refuse:
        return {"outcome": "file", "detail": f"a payload fedc must refuse ran and returned {value!r}"}
    return {"outcome": "ok"}


def _trace(recipe: dict, sandbox: str):
    """The recipe's graph as a @fedc.tf_computation (only for denied-op recipes)."""
    import fedc

    ctx = {"canary": os.path.join(sandbox, CANARY), "secret": os.path.join(sandbox, "secret.txt"), "sandbox": sandbox}
    if "op" not in recipe:
        return build_as_computation(trick_payload(recipe, ctx))
    _, _, builder = DENIED[DENIED_CLASSES.index(recipe["op"])]
    if hasattr(builder, "raw_op"):  # a hand-written node cannot be traced: run the node as built
        return build_as_computation(denied_payload(recipe, ctx))
    fn = _wrap(recipe["where"], builder, ctx)
    return fedc.tf_computation(np.float32)(lambda x: fn(x))


def build_as_computation(payload: bytes):
    import fedc
    from fedc import ir
    from fedc.types import FunctionType, TensorType

    f32 = TensorType(np.float32)
    module = ir.Module("step", [("step", ir.Compiled("tensorflow", payload, FunctionType(f32, f32), "step"))])
    return fedc.Computation(module, "step")


def recipes(rng: random.Random, index: int) -> dict:
    """The ``index``-th recipe: first every denied class in every place through every entry, then tricks."""
    plan = [{"op": op, "where": where, "entry": entry}
            for op in DENIED_CLASSES for where in WHERES for entry in ENTRIES]
    plan += [{"trick": trick, "entry": entry, "variant": v}
             for trick in TRICKS for entry in ("text", "proto", "api", "cli") for v in range(2)]
    if index < len(plan):
        recipe = plan[index]
    else:
        recipe = dict(rng.choice(plan))
        recipe["bytes"] = rng.randrange(2**31)
    return recipe


def main(argv) -> int:
    """Replays a saved case (``case.json`` of a failure folder) in this process."""
    import tempfile

    with open(argv[1]) as f:
        case = json.load(f)
    with tempfile.TemporaryDirectory() as sandbox:
        with open(os.path.join(sandbox, "secret.txt"), "w") as f:
            f.write(SECRET)
        result = run_recipe(case, sandbox)
        print(json.dumps(result, indent=2, default=repr))
        print("files left in the sandbox:", os.listdir(sandbox))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
