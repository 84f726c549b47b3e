"""The training loop over an ensemble: K members, one batched forward/backward/update per step.

Members share no parameters, so the summed per-member mean loss gives each member exactly its own
gradient. Member k shuffles the training set with its own generator seeded with seeds[k]; with the
initialisation in models.py this makes a K-member run equal to K one-member runs.
Only training is timed; evaluation runs between epochs, outside the clock.
"""
import time

import torch

from bench.metrics import curve_metrics, output_gradient

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_optimizer(cfg, params):
    """The optimizer named by cfg.name with every other key of the node as its keyword arguments."""
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    if "betas" in kwargs:  # YAML gives a list; torch wants a tuple
        kwargs["betas"] = tuple(kwargs["betas"])
    return OPTIMIZERS[cfg.name](params, **kwargs)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _outputs(model, x, k, chunk=8192):
    """Raw outputs of all members on a whole split: x [N, ...] -> z [K, N, O], in chunks."""
    return torch.cat([model(x[i:i + chunk].expand(k, *x[i:i + chunk].shape))
                      for i in range(0, len(x), chunk)], dim=1)


@torch.no_grad()
def evaluate(model, head, data, k, target_scale):
    """Curve metrics on train and val for all members: {split: {name: [K]}} (+ out_grad on train)."""
    model.eval()
    rows = {}
    for split, x, y in (("train", data.x_train, data.y_train), ("val", data.x_val, data.y_val)):
        z = _outputs(model, x, k)
        rows[split] = curve_metrics(head, z, y, target_scale)
        if split == "train":
            rows[split]["out_grad"] = output_gradient(head, z, y)
    model.train()
    return rows


def train(model, head, data, optimizer, seeds, epochs, batch_size, eval_every, progress=None):
    """Train all members; return (history rows, train_seconds, diverged_step [K] or -1, steps/epoch).

    History rows are dicts with seed, epoch, step, train_seconds, split, loss, curve metrics and
    out_grad; epoch 0 is evaluated before any training, and the last epoch is always evaluated.
    A member whose loss turns NaN/inf is marked diverged at that step: its loss no longer enters the
    sum, its gradient is zeroed, and its curve points after that are NaN.
    """
    k, n = len(seeds), len(data.x_train)
    device = data.x_train.device
    targets = head.encode(data.y_train)  # [N, O]
    shuffles = [torch.Generator().manual_seed(int(s)) for s in seeds]
    steps_per_epoch = -(-n // batch_size)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    diverged_step = torch.full((k,), -1, dtype=torch.long, device=device)
    objective = head.objective
    params = list(model.parameters())
    history, seconds, step = [], 0.0, 0

    def record(epoch):
        for split, metrics in evaluate(model, head, data, k, data.target_scale).items():
            values = {name: torch.where(alive, v, float("nan")).tolist() for name, v in metrics.items()}
            for m, seed in enumerate(seeds):
                history.append({"seed": int(seed), "epoch": epoch, "step": step, "train_seconds": seconds,
                                "split": split, **{name: vals[m] for name, vals in values.items()}})

    record(0)
    for epoch in range(1, epochs + 1):
        # each member's own permutation of the training set: [K, N], on the device
        order = torch.stack([torch.randperm(n, generator=g) for g in shuffles]).to(device)
        _sync(device)
        start = time.perf_counter()
        for i in range(0, n, batch_size):
            # forward backward update (no host-device sync inside the step)
            idx = order[:, i:i + batch_size]  # [K, B]
            z = model(data.x_train[idx])  # [K, B, O]
            member_loss = objective(z, targets[idx]).mean(1)  # [K]
            step += 1
            finite = torch.isfinite(member_loss)
            diverged_step = torch.where(alive & ~finite, step, diverged_step)
            alive = alive & finite
            torch.where(alive, member_loss, 0.0).sum().backward()
            for p in params:  # a diverged member's gradient is NaN or stale: freeze it
                p.grad = torch.where(alive.view(-1, *[1] * (p.dim() - 1)), p.grad, 0.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)
        seconds += time.perf_counter() - start
        # evaluate (untimed)
        if epoch % eval_every == 0 or epoch == epochs:
            record(epoch)
        if progress is not None:
            progress.update(1)
    return history, seconds, diverged_step.tolist(), steps_per_epoch


@torch.no_grad()
def raw_test_outputs(model, data):
    """Raw outputs z [K, N, O] of every member on the test split, on the CPU (the metrics read
    them through the head: probabilities, per-unit decisions, predictions in original units)."""
    model.eval()
    return _outputs(model, data.x_test, len(next(model.parameters()))).cpu()
