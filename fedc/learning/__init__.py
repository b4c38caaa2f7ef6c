"""Federated learning on fedc: TFF's ``tff.learning``, being built (issue 11).

Today: :mod:`fedc.learning.models` (Keras 3 and functional models) and
:mod:`fedc.learning.optimizers` (functional optimizers). Algorithms,
metrics and templates follow.
"""

from fedc.learning import algorithms, models, optimizers, templates

__all__ = ["algorithms", "models", "optimizers", "templates"]
from fedc.learning.algorithms import ClientWeighting, LoopImplementation  # noqa: E402

__all__ += ["ClientWeighting", "LoopImplementation"]
