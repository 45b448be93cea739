"""What the benchmark scripts share: the paper's networks, interleaved timing, and a PyTorch mirror of ``vgg``.

The scripts in this folder import it by name (``from common import ...``): Python puts a
script's own folder first on ``sys.path``, so this works from any working directory.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

#: The paper's networks: name -> (input shape, output size, hidden layers or architecture, batch,
#: classification).
NETS = {
    "sine": ((1,), 1, [20, 20, 20], 1000, False),
    "boston": ((13,), 1, [100, 100], 101, False),
    "mnist": ((784,), 10, [20, 20, 20], 1000, True),
    "fashion": ((1, 28, 28), 10, "architecture_1", 1000, True),
    "cifar10": ((3, 32, 32), 10, "architecture_4", 1000, True),
}


def interleaved_medians_ms(fns: dict, repeats: int, warmup: int = 3, before=None) -> dict[str, float]:
    """Median milliseconds of each function, timed in interleaved rounds (one call of each per round).

    ``before(key)``, when given, runs untimed before each timed call (e.g. to reset θ).
    """
    times = {k: [] for k in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for _ in range(repeats):
        for key, fn in fns.items():
            if before is not None:
                before(key)
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: round(1e3 * statistics.median(ts), 2) for k, ts in times.items()}


def build_torch(net, arch: dict, shape: tuple):
    """The same network in PyTorch, with the weights copied from θ."""
    import torch
    layers, C = [], shape[0]
    params = iter(net.slots)
    theta = net.theta.get_value()

    def take(module_param, slot, transform=lambda a: a):
        module_param.data = torch.from_numpy(np.ascontiguousarray(transform(
            theta[slot.start:slot.stop].reshape(slot.shape))))

    for spec in net.conv_layers:
        if spec["type"] == "CONV":
            conv = torch.nn.Conv2d(C, spec["num_filters"], spec["filter_size"], spec["stride"], spec["padding"])
            take(conv.weight, next(params))
            take(conv.bias, next(params))
            layers.append(conv)
            C = spec["num_filters"]
        elif spec["type"] == "ACT":
            layers.append(torch.nn.ReLU() if spec["activation"] == "relu" else torch.nn.Sigmoid())
        else:
            layers.append(torch.nn.MaxPool2d(spec["pool_size"], spec["stride"]))
    layers.append(torch.nn.Flatten())
    fc_specs = list(net.mlp_layers) + [None]
    for spec in fc_specs:
        w_slot, b_slot = next(params), next(params)
        lin = torch.nn.Linear(*w_slot.shape)
        take(lin.weight, w_slot, lambda a: a.T)
        take(lin.bias, b_slot)
        layers.append(lin)
        if spec is not None:
            layers.append(torch.nn.ReLU() if spec["activation"] == "relu" else torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers)
