"""TFF's "Custom Federated Algorithms" tutorial, first part, on fedc.

    python examples/temperature.py
"""

import numpy as np

import fedc


@fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
def get_average_temperature(sensor_readings):
    return fedc.federated_mean(sensor_readings)


@fedc.tf_computation(np.float32)
def add_half(x):
    return x + 0.5


@fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
def add_half_on_clients(x):
    return fedc.federated_map(add_half, x)


if __name__ == "__main__":
    print("get_average_temperature:", get_average_temperature.type_signature)
    print("average of [68.5, 70.3, 69.8]:", get_average_temperature([68.5, 70.3, 69.8]))
    print("add_half:", add_half.type_signature)
    print("add_half_on_clients:", add_half_on_clients.type_signature)
    print("add_half_on_clients([1.0, 2.0, 3.0]):", [float(v) for v in add_half_on_clients([1.0, 2.0, 3.0])])
    print()
    print(get_average_temperature.to_text())
