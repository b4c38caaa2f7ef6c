"""Average of client temperatures, built by hand as fedc IR.

Builds the computation `({float32}@CLIENTS -> float32@SERVER)` from building
blocks, verifies it, prints its textual IR, parses that text back, serializes
it to protobuf bytes and back, and checks that every round trip gives the
same module.

    python examples/temperature_ir.py
"""

import fedc
from fedc import ir

# A parameter `t` holding one float32 per client ...
readings_type = fedc.FederatedType(fedc.TensorType("float32"), fedc.CLIENTS)
t = ir.Reference("t", readings_type)
# ... averaged at the server by the federated_mean intrinsic.
get_average_temperature = ir.Lambda("t", readings_type, ir.intrinsic_call("federated_mean", t))

module = ir.Module("temperature", {"get_average_temperature": get_average_temperature})
ir.verify(module)

print("type:", get_average_temperature.type_signature)
text = ir.print_module(module)
print(text)

parsed = ir.parse_module(text, "temperature.fedir")
assert parsed == module, "textual IR did not round-trip"
assert ir.print_module(parsed) == text, "printing is not stable"

data = ir.serialize(module)
restored = ir.deserialize(data)
assert restored == module, "protobuf did not round-trip"
print(f"round trips: text ok, protobuf ok ({len(data)} bytes)")
