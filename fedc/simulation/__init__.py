"""Simulating federated training: datasets of many clients, and choosing the clients of each round.

TFF's ``tff.simulation``: ``fedc.simulation.datasets`` (``ClientData``,
``emnist``, the offline ``digits``), ``build_uniform_sampling_fn``, and
``run_training_process`` with checkpoints (``FileProgramStateManager``) and
metrics released to CSV and TensorBoard (TFF keeps the managers in
``tff.program``).
"""

from fedc.simulation import datasets
from fedc.simulation.datasets import ClientData
from fedc.simulation.sampling import build_uniform_sampling_fn
from fedc.simulation.training import (
    CSVFileReleaseManager,
    FileProgramStateManager,
    TensorBoardReleaseManager,
    run_training_process,
)

__all__ = ["CSVFileReleaseManager", "ClientData", "FileProgramStateManager", "TensorBoardReleaseManager",
           "build_uniform_sampling_fn", "datasets", "run_training_process"]
