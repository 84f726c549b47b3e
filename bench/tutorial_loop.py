"""The baseline `make perf` measures the harness against: the loop of the official PyTorch tutorial
(DataLoader over a TensorDataset, nn.Sequential, one seed at a time), what a user would otherwise write."""
import time

import torch

from bench import machine


def plain_loop(x, y, task, hidden, n_outputs, epochs, batch_size, lr, optimizer, seed, device,
               clock=time.perf_counter) -> tuple:
    """Train one nn.Sequential MLP the way the PyTorch quickstart does; return (training seconds, model).

    x, y: CPU tensors (the DataLoader batches them, each batch is moved to the device).
    """
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    widths = [x.shape[1], *hidden]
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(nn.Flatten(), *layers, nn.Linear(widths[-1], n_outputs)).to(device)
    loss_fn = {"multiclass": nn.CrossEntropyLoss(), "binary": nn.BCEWithLogitsLoss(),
               "regression": nn.MSELoss()}[task]
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer](model.parameters(), lr=lr)
    if task == "binary":
        y = y.float().unsqueeze(1)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    machine.sync(device)
    start = clock()
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
    machine.sync(device)
    return clock() - start, model
