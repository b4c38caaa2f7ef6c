"""Analyses of federated computations: where client values go, and what a round costs.

* :func:`privacy_report` builds the dataflow graph of each computation (a
  ``networkx.DiGraph`` whose nodes are parameters, calls — intrinsic or not —,
  data and the result) and lists every way a CLIENTS-placed value (a client
  parameter, client data, a value computed at the clients by
  ``federated_eval_at_clients``) reaches the server: for each client source and
  each intrinsic that carries a value across to the server (an aggregation —
  ``federated_mean``, ``federated_sum``, ``federated_weighted_mean``,
  ``federated_min``, ``federated_max``, ``federated_aggregate`` —, a secure
  sum — ``federated_secure_sum``, ``federated_secure_sum_bitwidth``,
  ``federated_secure_modular_sum`` — or the client keys of a
  ``federated_select``), one :class:`Flow` with the carrier's source location
  and a path from the source to the carrier.

  The pass ``privacy-report`` runs it and records the number of flows as
  statistics (``plain-flows``, ``secure-flows``); ``fedc compile --report
  privacy`` prints :meth:`PrivacyReport.text`.

* :func:`communication_cost` adds up, from the types alone, the bytes each
  client receives from the server per round (``federated_broadcast``, the
  results of ``federated_select``, ``federated_value_at_clients``) and the
  bytes it sends (the inputs of aggregations and secure sums — for
  ``federated_aggregate`` the accumulator each client folds its value into —,
  the keys of ``federated_select``), per intrinsic call and in total. A dimension that the
  type leaves unknown (``float32[?,784]``) becomes a symbol (``d0``), the
  length of a sequence another (``n0``), and the sizes are polynomials
  (:class:`Bytes`) in them, with a legend saying where each symbol comes
  from. ``fedc compile --report cost`` prints :meth:`CostReport.text`;
  ``fedc viz`` labels the edges that cross between clients and server with
  their bytes.

Both work on any verified IR: calls of other computations of the module are
followed into them, lambdas applied at the orchestration level are
beta-reduced, and selections and structs are tracked element by element, so
that a struct parameter ``<server_weights=…@SERVER, data={…}@CLIENTS>``
gives separate sources. They are most precise on call-dominant form, where
every intrinsic call is bound to a named local.
"""

# The analyses live in their own modules; this one gathers their public names:
#   fedc.passes.crossings what intrinsic calls move between server and clients, in bytes
#   fedc.passes.costs     the communication cost
#   fedc.passes.dataflow  the dataflow graph both analyses walk
#   fedc.passes.privacy   the privacy report and the privacy-report pass

from .costs import ComputationCost, CostReport, communication_cost
from .crossings import Bytes, Crossing, Transfer, Unknowns, bytes_label, intrinsic_crossings, type_bytes
from .dataflow import MAPREDUCE_NOTE, as_analysable, dataflow_graph  # noqa: F401 (fedc.viz, the tests)
from .privacy import ComputationPrivacy, Flow, PrivacyReport, privacy_report

__all__ = [
    "Bytes",
    "ComputationCost",
    "ComputationPrivacy",
    "CostReport",
    "Crossing",
    "Flow",
    "PrivacyReport",
    "Transfer",
    "Unknowns",
    "communication_cost",
    "dataflow_graph",
    "intrinsic_crossings",
    "privacy_report",
    "bytes_label",
    "type_bytes",
]
