"""Federated datasets for simulation: ``ClientData`` and the datasets built on it (TFF's ``tff.simulation.datasets``).

* :class:`ClientData` — client ids and each client's ``tf.data.Dataset``;
  :class:`TestClientData` holds clients' arrays in memory; :class:`SqlClientData`
  reads TFF's SQLite dataset files;
* :mod:`emnist` — federated EMNIST from TFF's file (``~/.tff``);
* :mod:`digits` — handwritten digits with EMNIST's elements, offline.
"""

from fedc.simulation.datasets import digits, emnist
from fedc.simulation.datasets.client_data import ClientData, TestClientData
from fedc.simulation.datasets.sql import SqlClientData

__all__ = ["ClientData", "SqlClientData", "TestClientData", "digits", "emnist"]
