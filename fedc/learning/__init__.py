"""Federated learning on fedc: TFF's ``tff.learning`` (issue 11, being built).

* :mod:`~fedc.learning.models` — Keras 3 models as TFF's ``VariableModel``,
  their stateless form, ``FunctionalModel``, ``ModelWeights``;
* :mod:`~fedc.learning.optimizers` — functional optimizers;
* :mod:`~fedc.learning.algorithms` — FedAvg (weighted, unweighted), FedProx,
  FedSGD, federated evaluation;
* :mod:`~fedc.learning.templates` — ``LearningProcess`` and its state and output.

Still to come: aggregator factories for the algorithms, metrics
aggregators, models whose ``tf_computation`` creates variables.
"""

from fedc.learning import algorithms, metrics, models, optimizers, templates
from fedc.learning.algorithms import ClientWeighting, LoopImplementation
from fedc.learning.models import BatchOutput, ModelWeights, VariableModel, from_keras_model

#: TFF's older spelling, which its tutorials still use (as they do ``tff.learning.from_keras_model``).
Model = VariableModel

__all__ = ["BatchOutput", "ClientWeighting", "LoopImplementation", "Model", "ModelWeights", "VariableModel",
           "algorithms", "from_keras_model", "metrics", "models", "optimizers", "templates"]
