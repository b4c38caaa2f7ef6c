"""Federated learning on fedc: TFF's ``tff.learning``.

* :mod:`~fedc.learning.models` — Keras 3 models as TFF's ``VariableModel``,
  their stateless form, ``FunctionalModel``, ``ModelWeights``;
* :mod:`~fedc.learning.optimizers` — functional optimizers;
* :mod:`~fedc.learning.algorithms` — FedAvg (weighted, unweighted), FedProx,
  FedSGD, federated evaluation;
* :mod:`~fedc.learning.templates` — ``LearningProcess`` and its state and
  output, ``DistributionProcess`` and ``build_broadcast_process``;
* :mod:`~fedc.learning.metrics` — ``sum_then_finalize``,
  ``secure_sum_then_finalize``.

Aggregation factories are in :mod:`fedc.aggregators`.
"""

from fedc.learning import algorithms, metrics, models, optimizers, templates
from fedc.learning.algorithms import ClientWeighting, LoopImplementation, build_federated_evaluation
from fedc.learning.models import BatchOutput, ModelWeights, VariableModel, from_keras_model

#: TFF's older spelling, which its tutorials still use (as they do ``tff.learning.from_keras_model``).
Model = VariableModel

__all__ = ["BatchOutput", "ClientWeighting", "LoopImplementation", "Model", "ModelWeights", "VariableModel",
           "algorithms", "build_federated_evaluation", "from_keras_model", "metrics", "models", "optimizers",
           "templates"]
