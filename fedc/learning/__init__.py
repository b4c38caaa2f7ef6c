"""Federated learning on fedc: TFF's ``tff.learning``, being built (issue 11).

Today: :mod:`fedc.learning.optimizers` (functional optimizers). Models,
algorithms, metrics and templates follow.
"""

from fedc.learning import optimizers

__all__ = ["optimizers"]
