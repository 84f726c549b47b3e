"""The training loop over an ensemble: K members, one batched forward/backward/update per step
(`bench.step`: the step's implementation is chosen there, once).

Members share no parameters, so the summed per-member mean loss gives each member exactly its own
gradient. Member k shuffles the training set with its own generator seeded with seeds[k]; with the
initialisation in models.py this makes a K-member run equal to K one-member runs.
Only training is timed; evaluation (a forward pass between epochs, the metrics of all points after
training: `Evaluation`) runs outside the clock.
"""
import ctypes
import functools
import math
import sys
import time
from dataclasses import dataclass

import torch

from bench import machine
from bench.metrics import Curves
from bench.models import ROW_ALIGN


@functools.cache  # once per process
def keep_freed_memory():
    """glibc: keep freed memory in the process for reuse instead of handing it back to the system.
    Evaluation allocates the same few-MiB temporaries at every point; handed back and fetched again they
    cost a page fault per 4 KiB (README, Speed). Process-wide; the process keeps its peak memory until it
    exits. Elsewhere: nothing."""
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


def padded(index, multiple=ROW_ALIGN):
    """index [K, n] -> [K, n'] with n' the next multiple of `multiple`, the extra positions repeating the
    first ones (real rows, so every loss and metric stays finite on them): a batch or chunk of n' rows
    gives each member the same bits whatever K (bench.models); the callers drop the padding rows."""
    n = index.shape[1]
    extra = -n % multiple
    return index if not extra else torch.cat([index, index[:, torch.arange(extra, device=index.device) % n]], 1)


def _outputs(forward, data, rep, rows, width):
    """Raw outputs of every member on its own rows: rep [K] replicates, rows [K, N] -> z [K, N, O] (a list
    per output layer [K_w, N, O_w] where `forward` returns one: a pack), in chunks of rows whose widest
    activation (`width` elements per row: the model's `widest_row`) holds at most EVAL_ELEMENTS (each
    chunk's features gathered then: no copy of a whole split per member), each padded to whole ROW_ALIGN
    rows."""
    k, n = rows.shape
    chunk = max(ROW_ALIGN, EVAL_ELEMENTS // (k * max(width, math.prod(data.input_shape))) // ROW_ALIGN * ROW_ALIGN)
    parts = []
    for i in range(0, n, chunk):
        z = forward(data.gather(rep, padded(rows[:, i:i + chunk])))
        keep = min(chunk, n - i)
        parts.append([p[:, :keep] for p in z] if isinstance(z, list) else z[:, :keep])
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], list):
        return [torch.cat(layer, 1) for layer in zip(*parts)]
    return torch.cat(parts, 1)


def train_curve_rows(n_train, n_val, requested=0, device="cpu"):
    """Positions in a member's training split of the rows its train curves are computed on [R]: all of
    them (requested = -1), or a fixed random subset of `requested` rows (0: as many as the validation
    split, so that the train and val curves are equally precise), the same positions for every member,
    epoch and run of the dataset (each member reads them in its own training split)."""
    rows = n_train if requested == -1 else min(n_train, requested or n_val)
    if rows >= n_train:
        return torch.arange(n_train, device=device)
    picked = torch.randperm(n_train, generator=torch.Generator().manual_seed(0))[:rows]
    return picked.sort().values.to(device)


class Evaluation:
    """The curves of train (its `train_curve_rows`) and val for every member and evaluation point.

    Each point is one forward pass over both splits' rows of every member, kept as raw outputs [K, N, O]
    (per output layer in a pack); the curve metrics of all kept points are computed together, per group
    of members with its own head (bench.groups), by one `Curves` pass over [points x K_g, N, O_g] (when
    the kept outputs reach KEEP_ELEMENTS, and at the end). An evaluation's metrics are some forty small
    tensor operations whose fixed cost, paid at every point, would add as much to a small model's run as
    its forward passes do; batched, it is paid once (README, Speed).
    """

    SPLITS = ("train", "val")
    KEEP_ELEMENTS = 2**21  # kept outputs before their metrics are computed (8 MiB in float32)

    def __init__(self, groups, data, train_rows, seeds, width, lrs=None):
        """groups: bench.groups.Groups (or a run's one Head); width: the model's `widest_row`; lrs: each
        member's learning rate (an `lr` column), if given."""
        from bench.groups import Groups

        self.groups = groups if isinstance(groups, Groups) else Groups.single(groups, len(seeds))
        self.data, self.rep = data, data.replicate_of(seeds)  # [K]
        at = train_curve_rows(data.train.shape[1], data.val.shape[1], train_rows, data.train.device)
        train, val = data.train[self.rep][:, at], data.val[self.rep]  # [K, R], [K, V]
        # each member's own rows, padded to whole ROW_ALIGN rows (bench.models) that count in no split
        keep = padded(torch.arange(train.shape[1] + val.shape[1], device=at.device)[None])[0]
        self.rows = torch.cat([train, val], 1)[:, keep]  # [K, R + V + padding]
        y = torch.cat([data.y_train[self.rep][:, at], data.targets(self.rep, val)], 1)[:, keep]  # [K, N(, T)]
        scale, padding = data.target_scale[self.rep], len(keep) - train.shape[1] - val.shape[1]
        self.curves = [Curves(g.head, y[g.members], [train.shape[1], val.shape[1]], scale[g.start:g.stop],
                              data.x.dtype, padding=padding) for g in self.groups]
        self.where = [self.groups.locate(i) for i in range(len(self.groups))]  # (output layer, its rows)
        self.seeds, self.width = [int(s) for s in seeds], width
        self.lrs = [{"lr": float(lr)} for lr in lrs] if lrs is not None else [{}] * len(self.seeds)
        self.kept = [[] for _ in self.groups]  # per group: (point, alive [K_g], its outputs [K_g, N, O_g])
        self.history_rows = [[] for _ in self.groups]  # finished history rows, per group

    @torch.no_grad()
    def __call__(self, forward, alive, **point):
        """Evaluate now with `forward` (x [K, N, ...] -> z [K, N, O], or a list per output layer: the
        step's, the model has no train-only layers); `point`: the columns of its history rows (epoch,
        step, train_seconds). Each group keeps its own outputs (a copy where it shares a layer) and has
        their curves computed when its own reach KEEP_ELEMENTS: the points batched together are then
        those of its run alone (a batch of other size rounds the curves' sums differently)."""
        z = _outputs(forward, self.data, self.rep, self.rows, self.width)
        zs = z if isinstance(z, list) else [z]
        for i, (group, (layer, rows)) in enumerate(zip(self.groups, self.where)):
            own = zs[layer] if rows == slice(0, len(zs[layer])) else zs[layer][rows].clone()
            self.kept[i].append((point, alive[group.members].clone(), own))
            if sum(z.numel() for _, _, z in self.kept[i]) >= self.KEEP_ELEMENTS:
                self._finish(i)

    def histories(self) -> list:
        """Per group: one row per (point, split, seed): its columns, split, seed and every curve; NaN for
        a member no longer alive at that point."""
        for i in range(len(self.groups)):
            self._finish(i)
        return self.history_rows

    def history(self) -> list:
        """Every group's rows (`histories`), group after group."""
        return [row for rows in self.histories() for row in rows]

    def _finish(self, i):
        if not self.kept[i]:
            return
        points, alive, outputs = zip(*self.kept[i])
        group, curves = self.groups[i], self.curves[i]
        k = group.size
        # [P*K, N, O] with the output units outermost in memory, the layout in which torch's CPU kernels
        # reduce over a few units fast (softmax over a short last axis is ~20x slower; losses._over_classes)
        z = torch.cat([z.permute(2, 0, 1) for z in outputs], 1).permute(1, 2, 0)
        values = curves(z)  # {name: [P*K, 2]}
        table = torch.stack(list(values.values()))  # [M, P*K, 2]
        table = torch.where(torch.cat(alive)[:, None], table, float("nan")).view(len(values), len(points), k, 2)
        table = table.permute(1, 3, 2, 0).tolist()  # one transfer from the device: [P][2][K][M]
        seeds, lrs = self.seeds[group.members], self.lrs[group.members]
        for point, by_split in zip(points, table):
            for split, by_seed in zip(self.SPLITS, by_split):
                for seed, lr, metrics in zip(seeds, lrs, by_seed):
                    self.history_rows[i].append({"seed": seed, **lr, **point, "split": split,
                                                 **dict(zip(values, metrics))})
        self.kept[i] = []


# a chunk of gathered batches: one epoch at once for small data, bounded for large data
GATHER_BYTES = 64 * 2**20


def _batches(data, rep, rows, targets, order, batch_size, buffers, groups):
    """One epoch of (x [K, B', ...], [targets [K_g, B', O_g] per group], B): every member's batches of B
    rows, padded to B' (a multiple of ROW_ALIGN: `padded`), gathered by index in chunks of up to
    GATHER_BYTES (one gather per chunk, not per step), then sliced as views.

    rep [K] each member's replicate; rows [K, N] its training rows; targets: per group of members
    (bench.groups.Groups: a run has one) every replicate's training targets in the group's encoding
    [R * N, O_g], replicate after replicate; order [K, N] this epoch's shuffle (positions in the member's
    training split). `buffers`: a dict kept across epochs; the gathers write into the same memory every
    epoch (a fresh chunk costs page faults: ~1.8 ms an epoch at K = 32 on the CPU). A batch is valid
    until the next."""
    k, n = order.shape
    spans = [(g.start, g.stop) for g in groups]
    target_bytes = sum((b - a) * t[:1].nbytes for (a, b), t in zip(spans, targets)) / k  # per member and row
    row_bytes = k * (math.prod(data.input_shape) * data.x.element_size() + target_bytes)
    span = max(1, int(GATHER_BYTES // (row_bytes * batch_size))) * batch_size  # whole batches per chunk
    if not buffers:
        size = min(span, n)
        buffers.update(x=data.x.new_empty(k * size, *data.input_shape),
                       t=[t.new_empty((b - a) * size, *t.shape[1:]) for (a, b), t in zip(spans, targets)])
    picked = rows.gather(1, order)  # [K, N]: the rows in this epoch's order
    target_rows = rep[:, None] * n + order  # [K, N]: each member's targets, in the same order
    for c in range(0, n, span):
        idx = picked[:, c:c + span]  # [K, span]
        xs = data.gather(rep, idx, out=buffers["x"][:idx.numel()])  # [K, span, ...]
        ts = []
        for (a, b), t, buffer in zip(spans, targets, buffers["t"]):
            flat = target_rows[a:b, c:c + span].reshape(-1)  # index_select: ~3x faster than t[idx] on the CPU
            ts.append(torch.index_select(t, 0, flat, out=buffer[:len(flat)]).view(b - a, -1, *t.shape[1:]))
        for i in range(0, idx.shape[1], batch_size):
            rows = min(batch_size, idx.shape[1] - i)
            if rows % ROW_ALIGN:  # padded to whole ROW_ALIGN rows (bench.models): the last batch, or every
                # batch of a size that is not a multiple
                at = padded(torch.arange(i, i + rows, device=idx.device)[None])[0]
                x, t = xs.index_select(1, at), [part.index_select(1, at) for part in ts]
            else:
                x, t = xs[:, i:i + rows], [part[:, i:i + rows] for part in ts]
            yield x, t, rows


def member_rows(params, m, members=None) -> list:
    """Member m's rows of every parameter that holds it (views); members: each parameter's (start, stop)
    span of members (a pack's output layers hold those of one width: bench.models); None: every one."""
    if members is None:
        return [p.detach()[m] for p in params]
    return [p.detach()[m - a] for p, (a, b) in zip(params, members) if a <= m < b]


def _hold(params, held, members=None):
    """The diverged members' parameters back to their last finite values: `held` maps a member to its
    values (its rows of each parameter holding it: `member_rows`). One foreach copy of their own rows,
    once per epoch: between, a diverged member's updates (weight 0, so NaN or nothing) run on in its own
    rows, which no other member reads (a copy after every step cost a run of 35 members with one diverged
    about 4 %)."""
    if held:
        with torch.no_grad():
            torch._foreach_copy_([r for m in held for r in member_rows(params, m, members)],
                                 [v for m in held for v in held[m]])


def finite_members(params, k, members=None):
    """[K] bool: member k's parameters are all finite (one reduction per tensor, no host sync): x * 0 is
    0 for a finite x and NaN for NaN or inf, so a member's sum of them is 0 exactly when all are finite
    (7x faster than isfinite().all(1) on the CPU, which makes four passes; the replay checks every step).
    members: as in `member_rows` (a parameter holding a span of members adds to their sums only)."""
    if members is None:
        return torch.stack([p.detach().view(k, -1).mul(0).sum(1) for p in params]).sum(0) == 0
    whole = [p for p, span in zip(params, members) if span == (0, k)]
    total = torch.stack([p.detach().view(k, -1).mul(0).sum(1) for p in whole]).sum(0)
    for p, (a, b) in zip(params, members):
        if (a, b) != (0, k):
            total[a:b] += p.detach().view(b - a, -1).mul(0).sum(1)
    return total == 0


def _epoch(step, batches, alive, held, dtype, diverged_step=None, first_step=0):
    """One pass of `step` over `batches`: (each member's loss summed over the steps [K], alive).

    A member no longer alive leaves the summed loss (weight 0); at the epoch's end its parameters are put
    back to `held` (`_hold`). With `diverged_step` (the replay of an epoch in which a member diverged)
    every step's loss and every update's parameters are read: a member whose loss is NaN/inf is marked
    there at its step (first_step + 1 is the epoch's first), one whose parameters the update made NaN/inf
    at that update's step; either is held at its values from before that step's update (its last finite
    ones), recorded in `held`."""
    weights = alive.to(dtype)  # a diverged member's loss leaves the sum
    total = torch.zeros(len(alive), dtype=dtype, device=alive.device)
    for j, (x, t, rows) in enumerate(batches):
        losses = step(x, t, rows)  # [K]
        if diverged_step is not None:  # (the only host-device syncs inside an epoch: a replay's)
            was = alive
            alive = alive & losses.isfinite()
            weights = alive.to(dtype)
            before = [p.detach().clone() for p in step.params]  # every member's values before the update
        total += losses
        step.update(weights)
        if diverged_step is not None:
            alive = alive & finite_members(step.params, len(alive), step.members)
            newly = was & ~alive
            diverged_step.masked_fill_(newly, first_step + j + 1)
            for m in newly.nonzero()[:, 0].tolist():  # its own rows only, not every member's snapshot
                held[m] = [v.clone() for v in member_rows(before, m, step.members)]
    _hold(step.params, held, step.members)
    return total, alive


def _warm_up(step, data, rep, rows, targets, batch_size, gathered, alive, dtype):
    """One untimed step and update on the first batch, the parameters and optimizer state put back
    after it: one-off costs happen here, before the clock starts, for every run (the first
    torch.autograd.grad with grad_outputs imports sympy and torch.fx, ~1.1 s; kernels' first calls,
    the gathered batches' first allocation, the optimizer's state, the per-epoch snapshot and the
    parameter check)."""
    k, n = rows.shape
    saved = step.state()
    order = torch.arange(n, device=rows.device).expand(k, n)
    xb, tb, n_rows = next(_batches(data, rep, rows, targets, order, batch_size, gathered, step.groups))
    losses = step(xb, tb, n_rows)
    step.update(alive.to(dtype))
    bool((losses.isfinite() & finite_members(step.params, k, step.members)).all())
    step.load_state(saved)


@dataclass
class Trained:
    """What `train` returns."""

    histories: list  # per group of members (a run has one): one dict per (evaluation point, split, seed)
    seconds: float  # train_seconds: the training steps' own time, evaluation excluded
    diverged_step: list  # per member: the step at which its loss turned NaN/inf, -1 if never
    steps_per_epoch: int

    @property
    def history(self) -> list:
        """Every group's history rows (see `Evaluation.history`)."""
        return [row for rows in self.histories for row in rows]

    def part(self, group, i) -> "Trained":
        """What group i (bench.groups.Group `group`) of a pack trained: its rows and its members'
        divergence steps, the pass's seconds."""
        return Trained([self.histories[i]], self.seconds, self.diverged_step[group.members], self.steps_per_epoch)


def train(step, data, seeds, epochs, batch_size, eval_every, *, train_curve_rows=0, progress=None,
          clock=time.perf_counter, lrs=None) -> Trained:
    """Train all members with `step` (bench.step.make_step) on `data`, member k shuffling with seeds[k]
    (a seed appears once per learning rate when the learning rate is an ensemble axis; `lrs`: each
    member's, recorded in the history's `lr` column).

    History rows are dicts with seed, epoch, step, train_seconds, split, loss, curve metrics and
    out_grad; epoch 0 is evaluated before any training, then every `eval_every` epochs and the last.
    The train rows are computed on `train_curve_rows` rows of the training split (see that function).
    A member whose loss turns NaN/inf, or whose parameters an update makes NaN/inf (the last update
    included), is marked diverged at that step and frozen: its loss leaves the sum, its parameters are
    held at their values from before that step's update, its last finite ones (whatever the optimizer;
    put back at every epoch's end, so at every evaluation and at the end), the other members go on
    unaffected, and its curve points after that are NaN.

    The step itself never waits for the device: divergence is detected once per epoch, from the
    per-member loss summed over the epoch and the parameters' finiteness at its end. Members share
    nothing, so a diverging member cannot disturb the others; when one diverged, the epoch is replayed
    from its start (parameters and optimizer state saved at the start of every epoch) checking every
    step, which finds the exact
    step and freezes the member before that step's update. Replays are rare; `train_seconds` counts
    the replayed pass, the one whose result is kept. `clock`: what train_seconds reads (wall time;
    bench.perf can read CPU time, which a busy shared machine disturbs less); `progress`: a tqdm bar.
    """
    keep_freed_memory()
    k, n, device, dtype = len(seeds), data.train.shape[1], data.x.device, data.x.dtype
    rep = data.replicate_of(seeds)  # [K]
    rows = data.train[rep]  # [K, N]: each member's training rows
    # every group's training targets in its own encoding: [R * N, O_g] per group
    targets = [g.head.encode(data.y_train.flatten(0, 1)).to(dtype) for g in step.groups]
    shuffles = [torch.Generator().manual_seed(int(s)) for s in seeds]
    steps_per_epoch = -(-n // batch_size)
    evaluation = Evaluation(step.groups, data, train_curve_rows, seeds, step.model.widest_row(), lrs)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    diverged_step = torch.full((k,), -1, dtype=torch.long, device=device)
    held = {}  # diverged member -> its last finite parameter values (`_hold`)
    seconds, steps = 0.0, 0
    gathered = {}  # the epoch's gathered batches, reused (see _batches)

    evaluation(step.forward, alive, epoch=0, step=0, train_seconds=0.0)
    _warm_up(step, data, rep, rows, targets, batch_size, gathered, alive, dtype)
    for epoch in range(1, epochs + 1):
        # forward backward update (timed): nothing in here waits for the device
        machine.sync(device)
        start = clock()
        order = torch.stack([torch.randperm(n, generator=g) for g in shuffles]).to(device)  # [K, N]: each member's own
        saved = step.state()
        batches = _batches(data, rep, rows, targets, order, batch_size, gathered, step.groups)
        total, alive = _epoch(step, batches, alive, held, dtype)
        # training's one host-device sync per epoch (timed): a loss NaN/inf, or parameters made NaN/inf by
        # an update (the epoch's last included, whose loss is never computed)
        diverged = bool((alive & ~(total.isfinite() & finite_members(step.params, k, step.members))).any())
        seconds_epoch = clock() - start

        # divergence: a member diverged in this epoch; replay it from its start, checking every step
        if diverged:
            start = clock()
            step.load_state(saved)
            batches = _batches(data, rep, rows, targets, order, batch_size, gathered, step.groups)
            _, alive = _epoch(step, batches, alive, held, dtype, diverged_step, steps)
            machine.sync(device)
            seconds_epoch = clock() - start
        seconds += seconds_epoch
        steps += steps_per_epoch

        # evaluate (untimed)
        if epoch % eval_every == 0 or epoch == epochs:
            evaluation(step.forward, alive, epoch=epoch, step=steps, train_seconds=seconds)
        if progress is not None:
            progress.update(1)
    return Trained(evaluation.histories(), seconds, diverged_step.tolist(), steps_per_epoch)


def optimizer_state_size(cfg) -> int:
    """Tensors of optimizer state per parameter tensor: Adam(W) 2 moments, SGD 1 with momentum."""
    if cfg.name == "sgd":
        return 1 if cfg.get("momentum", 0) else 0
    return 2


def memory_estimate(model, input_shape, k, batch_size, n_rows, n_outputs, state_size, stored_rows=None) -> dict:
    """Bytes a run needs on its device, by part, estimated before anything is moved there.

    model: the ensemble, still on the CPU, in its final dtype; n_rows: rows of one replicate's splits
    together; stored_rows: rows of features the data holds (every replicate's; default n_rows);
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
        outputs = model.outputs(x)  # per output layer
    row = x[0, 0].numel() * size
    return {
        "parameters": sum(p.numel() for p in params) * size * (3 + state_size),
        "activations": 2 * batch_size * (sum(saved.values()) + sum(z.numel() for z in outputs) * size),
        "batches": min(GATHER_BYTES, k * n_rows * (row + n_outputs * size)),
        "data": (n_rows if stored_rows is None else stored_rows) * row,
        # a forward chunk (its input, every layer's activation, and its
        # output, each at most EVAL_ELEMENTS), the outputs of every row, the evaluation rows' copy (at
        # most every row), and the kept outputs with the metrics' temporaries (~10 tensors of their size)
        "evaluation": (2 + len(getattr(model, "convs", [])) + len(model.hidden)) * EVAL_ELEMENTS * size
        + 2 * k * n_rows * n_outputs * size + n_rows * row + 10 * Evaluation.KEEP_ELEMENTS * size,
    }


@torch.no_grad()
def raw_test_outputs(model, data, seeds, split="test"):
    """Raw outputs z [K, N, O] of every member (seeds [K]) on its own test rows (or `split`'s), on the CPU
    (the metrics read them through the head: probabilities, per-unit decisions, predictions in original
    units); a list per output layer [K_w, N, O_w] for a pack of several widths. Contiguous, [K, N, O] in
    memory (an output layer computes transposed: bench.models.EnsembleOutput): what reads them batched over
    the members (temperature scaling) then gives a member the bits it has at any K, as it did."""
    model.eval()
    rep = data.replicate_of(seeds)
    z = _outputs(model, data, rep, getattr(data, split)[rep], model.widest_row())
    return [part.cpu().contiguous() for part in z] if isinstance(z, list) else z.cpu().contiguous()
