"""The training loop over an ensemble: K members, one batched forward/backward/update per step.

Members share no parameters, so the summed per-member mean loss gives each member exactly its own
gradient. Member k shuffles the training set with its own generator seeded with seeds[k]; with the
initialisation in models.py this makes a K-member run equal to K one-member runs.
Only training is timed; evaluation (a forward pass between epochs, the metrics of all points after
training: `Evaluation`) runs outside the clock.
"""
import ctypes
import functools
import sys
import time

import torch

from bench import machine
from bench.metrics import Curves

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_optimizer(cfg, params):
    """The optimizer named by cfg.name with every other key of the node as its keyword arguments;
    `PlainSGD` for SGD without momentum, weight decay, nesterov or maximize (the default)."""
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    params = list(params)
    if cfg.name == "sgd" and isinstance(kwargs.get("lr"), (int, float)) and \
            all(kwargs.get(key, 0) == 0 for key in PLAIN_SGD_ZEROS) and set(kwargs) <= {"lr", *PLAIN_SGD_ZEROS}:
        return PlainSGD(params, float(kwargs["lr"]))
    if "betas" in kwargs:  # YAML gives a list; torch wants a tuple
        kwargs["betas"] = tuple(kwargs["betas"])
    if all(p.device.type in ("cpu", "cuda") for p in params):
        # one fused kernel updates every parameter (2x faster for Adam on the CPU at K = 32)
        kwargs.setdefault("fused", True)
    return OPTIMIZERS[cfg.name](params, **kwargs)


# torch.optim.SGD settings that plain SGD leaves at 0 / False
PLAIN_SGD_ZEROS = ("momentum", "weight_decay", "dampening", "nesterov", "maximize")


class PlainSGD:
    """Plain SGD, p -= lr * grad: torch.optim.SGD's update without its machinery. It keeps no state,
    its step is one foreach kernel (Optimizer.step's bookkeeping is ~50 µs, a fifth of a small
    step), and building it imports nothing (a torch optimizer imports torch._dynamo: ~1 s of the
    few seconds a short run takes). The hand-written step applies it inside its backward."""

    def __init__(self, params, lr):
        self.param_groups = [{"params": list(params), "lr": lr}]

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    @torch.no_grad()
    def step(self):
        params = [p for p in self.param_groups[0]["params"] if p.grad is not None]
        torch._foreach_add_(params, [p.grad for p in params], alpha=-self.lr)

    def state_dict(self) -> dict:  # no state: the per-epoch snapshot of `train` is empty
        return {}

    def load_state_dict(self, state):
        pass


def plain_sgd_lr(optimizer):
    """The learning rate of `PlainSGD`, whose update needs no state; None for any other optimizer."""
    return optimizer.lr if isinstance(optimizer, PlainSGD) else None


@functools.cache  # once per process
def keep_freed_memory():
    """glibc: keep freed memory in the process for reuse instead of handing it back to the system.
    Evaluation allocates the same few-MiB temporaries at every point; handed back and fetched again they
    cost a page fault per 4 KiB (~2 µs each on the 2-core VM bench.perf ran on: evaluation took 40 %
    longer). Process-wide; the process keeps its peak memory until it exits. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 2**20)  # (glibc's largest) below it, memory comes from the reusable heap
    mallopt(m_trim_threshold, 2**31 - 1)  # never shrink the heap


# members x rows x elements of the widest activation of one evaluation chunk (bounds evaluation memory)
EVAL_ELEMENTS = 2**24


def _outputs(forward, x, k, width):
    """Raw outputs of all members on a whole split: x [N, ...] -> z [K, N, O], in chunks of rows whose
    widest activation (`width` elements per row: the model's `widest_row`) holds at most EVAL_ELEMENTS."""
    chunk = max(1, EVAL_ELEMENTS // (k * max(width, x[:1].numel())))
    if chunk >= len(x):  # (the usual case: one call)
        return forward(x.expand(k, *x.shape))
    return torch.cat([forward(x[i:i + chunk].expand(k, *x[i:i + chunk].shape)) for i in range(0, len(x), chunk)], 1)


def train_curve_rows(n_train, n_val, requested=0, device="cpu"):
    """Rows of the training split its curves are computed on [R]: all of them (requested = -1), or a
    fixed random subset of `requested` rows (0: as many as the validation split, so that the train and
    val curves are equally precise), the same for every member, epoch and run of the dataset.
    (The whole training split, evaluated every epoch, cost half as much as training: digits, K = 8.)"""
    rows = n_train if requested == -1 else min(n_train, requested or n_val)
    if rows >= n_train:
        return torch.arange(n_train, device=device)
    picked = torch.randperm(n_train, generator=torch.Generator().manual_seed(0))[:rows]
    return picked.sort().values.to(device)


class Evaluation:
    """The curves of train (its `train_curve_rows`) and val for every member and evaluation point.

    Each point is one forward pass over both splits' rows, kept as raw outputs [K, N, O]; the curve
    metrics of all kept points are computed together by one `Curves` pass over [points x K, N, O]
    (when the kept outputs reach KEEP_ELEMENTS, and at the end). An evaluation's metrics are some
    forty small tensor operations whose fixed cost, paid at every point, would add as much to a
    small model's run as its forward passes do; batched, it is paid once. Measured with bench.perf
    (digits, K = 8), evaluating every epoch added to the training time: 48 % split by split on the
    whole training split; 16-19 % batched; 16-19 % still once bench.kernels made training twice as
    fast (the kernels run the forward passes and a softmax output's figures too).
    """

    SPLITS = ("train", "val")
    KEEP_ELEMENTS = 2**21  # kept outputs before their metrics are computed (8 MiB in float32)

    def __init__(self, head, data, train_rows, seeds, width, kernels=None):
        """width: the model's `widest_row`; kernels: see Curves."""
        rows = train_curve_rows(len(data.x_train), len(data.x_val), train_rows, data.x_train.device)
        self.x = torch.cat([data.x_train[rows], data.x_val])
        y = torch.cat([data.y_train[rows], data.y_val])
        self.curves = Curves(head, y, [len(rows), len(data.x_val)], data.target_scale, data.x_train.dtype,
                             kernels)
        self.seeds, self.width = [int(s) for s in seeds], width
        self.kept, self.rows = [], []  # (point, alive [K], outputs [K, N, O]); finished history rows

    @torch.no_grad()
    def __call__(self, forward, alive, **point):
        """Evaluate now with `forward` (x [K, N, ...] -> z [K, N, O]: the model, which has no
        train-only layers, or its bench.kernels.Kernel); `point`: the columns of its history rows
        (epoch, step, train_seconds)."""
        self.kept.append((point, alive.clone(), _outputs(forward, self.x, len(alive), self.width)))
        if sum(z.numel() for _, _, z in self.kept) >= self.KEEP_ELEMENTS:
            self._finish()

    def history(self) -> list:
        """One row per (point, split, seed): its columns, split, seed and every curve; NaN for a member
        no longer alive at that point."""
        self._finish()
        return self.rows

    def _finish(self):
        if not self.kept:
            return
        points, alive, outputs = zip(*self.kept)
        k = len(self.seeds)
        # [P*K, N, O] with the output units outermost in memory, the layout in which torch's CPU kernels
        # reduce over a few units fast (softmax over a short last axis is ~20x slower; losses._over_classes)
        z = torch.cat([z.permute(2, 0, 1) for z in outputs], 1).permute(1, 2, 0)
        values = self.curves(z, out_grad=True)  # {name: [P*K, 2]}
        table = torch.stack(list(values.values()))  # [M, P*K, 2]
        table = torch.where(torch.cat(alive)[:, None], table, float("nan")).view(len(values), len(points), k, 2)
        table = table.permute(1, 3, 2, 0).tolist()  # one transfer from the device: [P][2][K][M]
        for point, by_split in zip(points, table):
            for split, by_seed in zip(self.SPLITS, by_split):
                for seed, metrics in zip(self.seeds, by_seed):
                    self.rows.append({"seed": seed, **point, "split": split, **dict(zip(values, metrics))})
        self.kept = []


# a chunk of gathered batches: one epoch at once for small data, bounded for large data
GATHER_BYTES = 64 * 2**20


def _batches(x, targets, order, batch_size, buffers):
    """One epoch of (x [K, B, ...], targets [K, B, O]): every member's batches gathered by index
    in chunks of up to GATHER_BYTES (one gather per chunk, not per step), then sliced as views.
    `buffers`: a dict kept across epochs; the gathers write into the same memory every epoch (a fresh
    chunk costs page faults: ~1.8 ms an epoch at K = 32 on the CPU). A batch is valid until the next."""
    k, n = order.shape
    row_bytes = k * (x[:1].nbytes + targets[:1].nbytes)
    span = max(1, GATHER_BYTES // (row_bytes * batch_size)) * batch_size  # whole batches per chunk
    if not buffers:
        size = k * min(span, n)
        buffers.update(x=x.new_empty(size, *x.shape[1:]), t=targets.new_empty(size, *targets.shape[1:]))
    for c in range(0, n, span):
        idx = order[:, c:c + span]  # [K, span]
        rows = idx.reshape(-1)  # index_select: ~3x faster than x[idx] on the CPU
        xs = torch.index_select(x, 0, rows, out=buffers["x"][:len(rows)]).view(k, -1, *x.shape[1:])  # [K, span, ...]
        ts = torch.index_select(targets, 0, rows, out=buffers["t"][:len(rows)]).view(k, -1, *targets.shape[1:])
        for i in range(0, idx.shape[1], batch_size):
            yield xs[:, i:i + batch_size], ts[:, i:i + batch_size]


def member_losses(model, objective, dtype, amp_dtype=None):
    """f(x [K, B, ...], t [K, B, O]) -> per-member mean loss [K]; with `amp_dtype` the model runs
    under autocast (bfloat16 matmuls) and the objective in full precision."""
    if amp_dtype is None:
        def losses(x, t):
            return objective(model(x), t).mean(1)
    else:
        def losses(x, t):
            with torch.autocast(x.device.type, dtype=amp_dtype):
                z = model(x)
            return objective(z.to(dtype), t).mean(1)
    return losses


def objective_gradient(head, kernel=None):
    """f(z [K, B, O], t [K, B, O]) -> (mean loss [K], dz(weights [K]) = d(sum_k w_k loss_k)/dz) from the
    head's hand-written objective gradient (`Head.objective_and_gradient`: softmax + CCE; computed by
    `kernel` where given, a bench.kernels.Kernel); None for every other objective: autograd runs on
    it (a third of a small step's time)."""
    per_example = head.objective_and_gradient
    if per_example is None:
        return None
    if kernel is not None:
        per_example = kernel.cce_and_gradient

    def f(z, t):
        losses, grad = per_example(z, t)  # [K, B], [K, B, O]

        def dz(weights):
            return grad.mul_((weights / t.shape[1])[:, None, None])

        return losses.mean(1), dz

    return f


def training_step(model, objective, dtype, amp_dtype=None, compile=False, hand_backward=True,
                  gradient=None, sgd_lr=None, kernel=None):
    """(f, updates): f(x [K, B, ...], t [K, B, O]) -> (per-member mean loss [K], backward(weights [K])):
    backward sets the parameters' .grad to d(sum_k weights_k loss_k)/dp, or, where `updates` is True,
    applies plain SGD with `sgd_lr` itself (the hand-written steps only) and sets no .grad.

    `kernel` (a bench.kernels.Kernel of this model) where given; else the model's hand-written
    backward (EnsembleMLP.losses_and_backward: the same curves, no autograd graph through the layers)
    where it has one and neither autocast nor compile is asked for; both with `gradient`
    (`objective_gradient`) as the objective's backward where given. `hand_backward=False` forces
    autograd (the reference the tests compare with).
    """
    if kernel is not None:
        from bench.models import objective_and_dz

        def kernel_step(x, t):
            losses, dz = objective_and_dz(kernel.forward(x), t, objective, gradient)
            return losses, lambda weights: kernel.backward(dz(weights), sgd_lr)

        return kernel_step, sgd_lr is not None
    hand = getattr(model, "losses_and_backward", None)
    if hand_backward and hand is not None and getattr(model, "act_backward", None) and amp_dtype is None \
            and not compile:
        return (lambda x, t: hand(x, t, objective, gradient, sgd_lr)), sgd_lr is not None
    losses = member_losses(model, objective, dtype, amp_dtype)
    if compile:
        losses = torch.compile(losses)

    def step(x, t):
        member_loss = losses(x, t)
        return member_loss.detach(), member_loss.backward

    return step, False


def _library(dtype, device):
    """bench.kernels' library for a run in this dtype on this device: CPU, float32, built; else None."""
    from bench import kernels

    return kernels.library() if dtype == torch.float32 and torch.device(device).type == "cpu" else None


def _kernel(model, lib):
    """A bench.kernels.Kernel for this model where the kernel applies (lib: `_library`'s), else None."""
    from bench import kernels

    return kernels.Kernel(model, lib) if lib is not None and kernels.applies(model) else None


def _freeze(params, alive, keep):
    """Rows of members that are no longer alive back to `keep` (their values when they diverged)."""
    k = len(alive)
    with torch.no_grad():
        for p, v in zip(params, keep):
            rows = p.view(k, -1)
            rows.copy_(torch.where(alive[:, None], rows, v.view(k, -1)))


def train(model, head, data, optimizer, seeds, epochs, batch_size, eval_every, progress=None, *,
          train_curve_rows=0, amp_dtype=None, compile=False, clock=time.perf_counter, hand_backward=True,
          cpu_kernels=True):
    """Train all members; return (history rows, train_seconds, diverged_step [K] or -1, steps/epoch).

    History rows are dicts with seed, epoch, step, train_seconds, split, loss, curve metrics and
    out_grad; epoch 0 is evaluated before any training, and the last epoch is always evaluated.
    The train rows are computed on `train_curve_rows` rows of the training split (see that function).
    A member whose loss turns NaN/inf is marked diverged at that step and frozen: its loss leaves the
    sum, its parameters keep their values from before that step (whatever the optimizer), the other
    members go on unaffected, and its curve points after that are NaN.

    The step itself never waits for the device: divergence is detected once per epoch, from the
    per-member loss summed over the epoch. Members share nothing, so a diverging member cannot
    disturb the others; when one diverged, the epoch is replayed from its start (parameters and
    optimizer state saved at the start of every epoch) checking every step, which finds the exact
    step and freezes the member before that step's update. Replays are rare; `train_seconds` counts
    the replayed pass, the one whose result is kept.
    Gradients are set to None after every step (zero_grad(set_to_none=True) without its overhead).
    `amp_dtype`: autocast dtype for the forward pass (bfloat16 on CUDA); `compile`: torch.compile the
    forward pass and objective (the backward is compiled with it); `clock`: what train_seconds reads
    (wall time; bench.perf can read CPU time, which a busy shared machine disturbs less);
    `hand_backward`: see `training_step` (False: autograd through the model and optimizer.step, the
    reference the tests compare with); `cpu_kernels`: train and evaluate with bench.kernels where it
    applies (see there).
    """
    import copy

    keep_freed_memory()
    k, n = len(seeds), len(data.x_train)
    device = data.x_train.device
    targets = head.encode(data.y_train).to(data.x_train.dtype)  # [N, O]
    dtype = data.x_train.dtype
    shuffles = [torch.Generator().manual_seed(int(s)) for s in seeds]
    steps_per_epoch = -(-n // batch_size)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    lib = _library(dtype, device) if cpu_kernels else None
    kernel = _kernel(model, lib) if hand_backward and amp_dtype is None and not compile else None
    step_fn, updates = training_step(model, head.objective, dtype, amp_dtype, compile, hand_backward,
                                     objective_gradient(head, kernel) if hand_backward else None,
                                     plain_sgd_lr(optimizer) if hand_backward else None, kernel)
    forward = kernel or model  # for evaluation
    evaluation = Evaluation(head, data, train_curve_rows, seeds, model.widest_row(), lib)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    diverged_step = torch.full((k,), -1, dtype=torch.long, device=device)
    keep = None  # parameter values that diverged members are held at
    seconds, step = 0.0, 0
    gathered = {}  # the epoch's gathered batches, reused (see _batches)

    def run_epoch(order, check):
        """One pass over the data; returns each member's loss summed over the steps [K]."""
        nonlocal alive, keep
        weights = alive.to(dtype)  # a diverged member's loss leaves the sum
        total = torch.zeros(k, dtype=dtype, device=device)
        for j, (x, t) in enumerate(_batches(data.x_train, targets, order, batch_size, gathered)):
            # forward backward update: nothing in here waits for the device
            member_loss, backward = step_fn(x, t)  # [K]
            if check:  # replay: find the step at which a member diverges, freeze it before the update
                newly = alive & ~member_loss.isfinite()
                diverged_step.masked_fill_(newly, step + j + 1)
                alive = alive & ~newly
                weights = alive.to(dtype)
                keep = [p.detach().clone() for p in params]
            total += member_loss
            backward(weights)
            if not updates:  # (the hand-written step applies plain SGD in its backward)
                optimizer.step()
                for p in params:
                    p.grad = None
            if keep is not None:
                _freeze(params, alive, keep)
        return total

    evaluation(forward, alive, epoch=0, step=0, train_seconds=0.0)
    for epoch in range(1, epochs + 1):
        machine.sync(device)
        start = clock()
        # each member's own permutation of the training set: [K, N], on the device
        order = torch.stack([torch.randperm(n, generator=g) for g in shuffles]).to(device)
        saved = [p.detach().clone() for p in params], copy.deepcopy(optimizer.state_dict())
        total = run_epoch(order, check=False)
        diverged = bool((alive & ~total.isfinite()).any())  # training's one host-device sync per epoch: timed
        seconds_epoch = clock() - start
        if diverged:
            # a member diverged in this epoch: replay it from its start, checking every step
            start = clock()
            with torch.no_grad():
                for p, value in zip(params, saved[0]):
                    p.copy_(value)
            optimizer.load_state_dict(saved[1])
            run_epoch(order, check=True)
            keep = None if bool(alive.all()) else [p.detach().clone() for p in params]
            machine.sync(device)
            seconds_epoch = clock() - start
        seconds += seconds_epoch
        step += steps_per_epoch
        # evaluate (untimed)
        if epoch % eval_every == 0 or epoch == epochs:
            evaluation(forward, alive, epoch=epoch, step=step, train_seconds=seconds)
        if progress is not None:
            progress.update(1)
    return evaluation.history(), seconds, diverged_step.tolist(), steps_per_epoch


def optimizer_state_size(cfg) -> int:
    """Tensors of optimizer state per parameter tensor: Adam(W) 2 moments, SGD 1 with momentum."""
    if cfg.name == "sgd":
        return 1 if cfg.get("momentum", 0) else 0
    return 2


def memory_estimate(model, input_shape, k, batch_size, n_rows, n_outputs, state_size) -> dict:
    """Bytes a run needs on its device, by part, estimated before anything is moved there.

    model: the ensemble, still on the CPU, in its final dtype; n_rows: rows of all splits together;
    state_size: `optimizer_state_size`.
    parameters: values, gradients, optimizer state and the per-epoch snapshot.
    activations: what autograd keeps for the backward pass of one step, counted by running the model
    once on one example per member and scaling by the batch size; twice over (the gradients flowing
    back). batches: one gathered chunk (GATHER_BYTES at most). data: every split, moved once.
    evaluation: one chunk of inputs and activations, the outputs [K, N, O] of all rows, the rows the
    curves are computed on, and the outputs `Evaluation` keeps with the metrics' temporaries.
    """
    params = list(model.parameters())
    size = params[0].element_size()
    saved = {}

    def pack(t):
        if not (t.is_leaf and t.requires_grad):  # the parameters are counted above
            saved[t.data_ptr(), t.numel()] = t.numel() * t.element_size()  # once, however often saved
        return t

    x = torch.zeros(k, 1, *input_shape, dtype=params[0].dtype, device=params[0].device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        z = model(x)
    row = x[0, 0].numel() * size
    return {
        "parameters": sum(p.numel() for p in params) * size * (3 + state_size),
        "activations": 2 * batch_size * (sum(saved.values()) + z.numel() * size),
        "batches": min(GATHER_BYTES, k * n_rows * (row + n_outputs * size)),
        "data": n_rows * row,
        # a forward chunk (its input, every layer's activation: bench.kernels keeps them all, and its
        # output, each at most EVAL_ELEMENTS), the outputs of every row, the evaluation rows' copy (at
        # most every row), and the kept outputs with the metrics' temporaries (~10 tensors of their size)
        "evaluation": (2 + len(getattr(model, "convs", [])) + len(model.hidden)) * EVAL_ELEMENTS * size
        + 2 * k * n_rows * n_outputs * size + n_rows * row + 10 * Evaluation.KEEP_ELEMENTS * size,
    }


@torch.no_grad()
def raw_test_outputs(model, data):
    """Raw outputs z [K, N, O] of every member on the test split, on the CPU (the metrics read
    them through the head: probabilities, per-unit decisions, predictions in original units)."""
    model.eval()
    return _outputs(model, data.x_test, len(next(model.parameters())), model.widest_row()).cpu()
