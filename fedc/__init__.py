"""fedc: a compiler for federated computations.

``import fedc`` is light: TensorFlow and Ray are imported only when a
computation needs them.
"""

from fedc import errors, types
from fedc.errors import (
    FedcError,
    FedcTypeError,
    FedcValueError,
    FedcWarning,
    ParseError,
    SerializationError,
    SourceLocation,
    UnsafeTensorFlowError,
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

from fedc.computation import Computation, PolymorphicComputation
from fedc.context import backend, set_default_backend
from fedc.frontend.federated import (
    federated_aggregate,
    federated_broadcast,
    federated_computation,
    federated_eval,
    federated_map,
    federated_max,
    federated_mean,
    federated_min,
    federated_secure_modular_sum,
    federated_secure_select,
    federated_secure_sum,
    federated_secure_sum_bitwidth,
    federated_select,
    federated_sum,
    federated_value,
    federated_zip,
    sequence_map,
    sequence_reduce,
    sequence_sum,
)
from fedc.frontend.tensorflow import tf_computation
from fedc import ops, templates
from fedc.startup import quiet_tensorflow_startup

from types import SimpleNamespace as _Namespace  # noqa: E402

#: TFF's other spellings of ``tf_computation``: ``tff.tensorflow_computation`` and ``tff.tensorflow.computation``.
tensorflow_computation = tf_computation
tensorflow = _Namespace(computation=tf_computation)


#: The libraries on top of the API, imported when first used (``fedc.simulation.datasets…`` after ``import fedc``,
#: as TFF's ``tff.simulation``), so that ``import fedc`` stays light and the API does not depend on them.
_LIBRARIES = ("aggregators", "learning", "privacy", "simulation")


def __getattr__(name: str):
    if name in _LIBRARIES:
        import importlib

        return importlib.import_module(f"fedc.{name}")
    raise AttributeError(f"module 'fedc' has no attribute {name!r}")
