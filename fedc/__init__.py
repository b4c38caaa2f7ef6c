"""fedc: a compiler for federated computations.

``import fedc`` is light: TensorFlow and Ray are imported only when a
computation needs them.
"""

from fedc import errors, types
from fedc.errors import (
    FedcError,
    FedcTypeError,
    ParseError,
    SerializationError,
    SourceLocation,
    UnsupportedError,
    VerificationError,
)
from fedc.types import (
    CLIENTS,
    SERVER,
    AbstractType,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    Type,
    to_type,
)

__version__ = "0.1.0"
