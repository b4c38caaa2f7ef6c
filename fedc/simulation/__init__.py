"""Simulating federated training: datasets of many clients, and choosing the clients of each round.

TFF's ``tff.simulation``: ``fedc.simulation.datasets`` (``ClientData``,
``emnist``, the offline ``digits``) and ``build_uniform_sampling_fn``.
"""

from fedc.simulation import datasets
from fedc.simulation.datasets import ClientData
from fedc.simulation.sampling import build_uniform_sampling_fn

__all__ = ["ClientData", "build_uniform_sampling_fn", "datasets"]
