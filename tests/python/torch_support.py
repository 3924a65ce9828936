"""Helpers of the python suite's torch tests: a tiny training setup built
from its sizes (no download, seeded), and exact comparison of states."""

import numpy
import torch


def make_training(inp, width, out, extra_layer=False):
    """A seeded MLP inp -> width -> out (and one more out -> out layer with
    extra_layer), with Adam and a StepLR halving the rate every step."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(inp, width), torch.nn.ReLU(), torch.nn.Linear(width, out)]
    if extra_layer:
        layers.append(torch.nn.Linear(out, out))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return model, opt, sched


def same(a, b):
    """Equal tensors (and dtypes), numpy arrays, dicts, lists and values,
    recursively and exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, numpy.ndarray):
        return numpy.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b
