"""C kernels for the CPU in float32 (kernels.c): the ensemble MLP's training step, softmax + CCE, and the
per-row figures of a softmax output for the curves.

Why: at the default sizes (batch 32, 64-wide layers) a torch step is some thirty small operations, each
paying dispatch and a fork/join of its threads, and the matmuls ran at half the speed they reach alone
(bench.perf, K = 32: 14 % of the machine's matmul rate with torch ops, ~30 % with the kernel). `Kernel`
runs each member's whole forward, backward and SGD update on one core, its operands in that core's
caches; `softmax_figures` gives the curves of a softmax output from one pass instead of some ten.

Where they run (`trainer.cpu_kernels=true`, the default; the CPU; float32):
  - `Kernel`: the layers of bench.step.HandWrittenStep for model=mlp with a relu or tanh hidden activation,
    neither trainer.compile nor autocast: the training step and the evaluation forward pass. The objective's
    gradient dz stays in torch (`bench.step.objective_and_dz`; softmax + CCE's in C, `Kernel.cce_and_gradient`),
    so every loss and output activation works; plain SGD is applied inside the kernel, any other optimizer
    gets .grad.
  - `softmax_figures`: the per-row figures of any run with a softmax output (bench.metrics.Curves).
bench.step.make_step is the one place that chooses them.
Everywhere else, and where no C compiler is found (one note on stderr), torch ops compute the same
curves within float32 rounding: tests/test_kernels.py and test_perf.py check both paths against autograd,
torch and scikit-learn.

Built on first use with the system C compiler (`cc`, or $CC) for this machine's CPU (-march=native), about
a second, and cached per CPU model in ~/.cache/lossbench (or $XDG_CACHE_HOME/lossbench). A compiler without
OpenMP builds kernels that run on one thread (noted once); each member's numbers are the same bits.
"""
import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("kernels.c")
ACTIVATIONS = {"relu": 0, "tanh": 1}  # the C enum
# -O3 and no -ffast-math: NaN and inf propagate as in torch (divergence detection reads them)
FLAGS = ["-O3", "-march=native", "-fPIC", "-shared"]
OPENMP = ["-fopenmp"]  # members in parallel; a compiler without OpenMP builds kernels that run on one thread

_library = None  # the loaded library; False once building it failed


def library():
    """The compiled kernels.c (built on first use), or None where it cannot be built (noted once on stderr)."""
    global _library
    if _library is None:
        try:
            _library = _load(_build())
        except (OSError, subprocess.SubprocessError) as error:
            print(f"note: bench/kernels.c could not be built ({_first_line(error)}); training uses torch ops, "
                  "which give the same results more slowly (trainer.cpu_kernels=false silences this)",
                  file=sys.stderr)
            _library = False
    return _library or None


def _first_line(error) -> str:
    """The compiler's first line of error output where it gave one (e.g. a missing omp.h), else the error."""
    said = (getattr(error, "stderr", None) or b"").decode(errors="replace").strip()
    text = said.splitlines()[0] if said else str(error) or type(error).__name__
    return " ".join(text.split())[:200]


def _cpu() -> str:
    """What -march=native compiles for: the CPU's model and flags (a cache shared across machines keeps
    one build per CPU)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        return "\n".join(sorted({line for line in info.splitlines() if line.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor() or platform.machine()


def _build() -> Path:
    """The library, built with OpenMP where the compiler has it, else without (noted once), and cached."""
    compiler = os.environ.get("CC", "cc").split()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lossbench"
    machine = SOURCE.read_bytes() + b"\0" + _cpu().encode()  # what both builds' cache keys share (read once)
    parallel, serial = (_cached(cache, compiler, flags, machine) for flags in (FLAGS + OPENMP, FLAGS))
    for built in (parallel, serial):  # (a serial build exists only where the parallel one failed)
        if built.exists():
            return built
    try:
        return _compile(compiler, FLAGS + OPENMP, parallel)
    except subprocess.CalledProcessError as error:
        built = _compile(compiler, FLAGS, serial)
        print(f"note: bench/kernels.c was built without OpenMP ({_first_line(error)}): its kernels run on one "
              f"thread (delete {cache} to try again)", file=sys.stderr)
        return built


def _cached(cache, compiler, flags, machine) -> Path:
    """Where the build with this compiler and flags of `machine` (the source and the CPU) is kept."""
    key = b"\0".join([machine, " ".join(compiler + flags).encode()])
    return cache / f"kernels-{hashlib.sha256(key).hexdigest()[:16]}.so"


def _compile(compiler, flags, built) -> Path:
    built.parent.mkdir(parents=True, exist_ok=True)
    # build under a temporary name, then rename: parallel sweep workers may build at the same time
    with tempfile.TemporaryDirectory(dir=built.parent) as tmp:
        out = Path(tmp) / built.name
        subprocess.run([*compiler, *flags, str(SOURCE), "-o", str(out)], check=True, capture_output=True,
                       timeout=120)
        os.replace(out, built)
    return built


def _load(path):
    lib = ctypes.CDLL(str(path))
    i, n, p, pp = ctypes.c_int, ctypes.c_long, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
    widths = ctypes.POINTER(ctypes.c_int)
    lib.mlp_scratch_floats.argtypes, lib.mlp_scratch_floats.restype = [i, i, widths], n
    # (K, B, L, widths, x, x member stride, weights, biases, hidden, ...)
    lib.mlp_forward.argtypes = [i, i, i, widths, p, n, pp, pp, pp, p, i, p, n, i]  # ... z, act, scratch, threads
    lib.mlp_backward.argtypes = [i, i, i, widths, p, n, pp, pp, pp, p, ctypes.c_float, pp, pp, i, p, n, i]
    lib.mlp_forward.restype = lib.mlp_backward.restype = None  # ... dz, lr, gW, gB, act, scratch, threads
    lib.softmax_cce.argtypes, lib.softmax_cce.restype = [i, i, i, p, p, n, p, p, i], None
    lib.softmax_figures.argtypes, lib.softmax_figures.restype = [n, i, i, p, n, p, p, p, i], None
    return lib


def applies(model) -> bool:
    """Whether `Kernel` can run this model: an EnsembleMLP with a relu or tanh hidden activation whose
    parameters are contiguous float32 on the CPU."""
    from bench.models import EnsembleMLP

    return isinstance(model, EnsembleMLP) and model.activation in ACTIVATIONS and all(
        p.dtype == torch.float32 and p.device.type == "cpu" and p.is_contiguous() for p in model.parameters())


def softmax_figures(lib, z, y):
    """Per-row figures of softmax outputs from their raw outputs z [M, N, C] and true classes y [N], by one
    pass of kernels.c: ({"log_p_true", "p_true", "sum_squares", "units_wrong"} [M, N] float32, labels [M, N]:
    the first index of the largest z). Torch needs some ten passes over [M, N, C] for the same. The kernel
    reads the classes outermost in memory (the layout evaluation keeps); z in another is copied to it."""
    m, n, c = z.shape
    if z.stride()[:2] != (n, 1):
        z = z.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    y = y.to(torch.long).contiguous()
    figures, labels = torch.empty(5, m, n), torch.empty(m, n, dtype=torch.long)
    lib.softmax_figures(m * n, n, c, z.data_ptr(), z.stride(2), y.data_ptr(), figures.data_ptr(),
                        labels.data_ptr(), torch.get_num_threads())
    shifted, p_true, sum_squares, units_wrong, exp_sum = figures  # log p_y = (z_y - max z) - log sum exp(z - max z)
    return {"log_p_true": shifted - exp_sum.log(), "p_true": p_true, "sum_squares": sum_squares,
            "units_wrong": units_wrong}, labels


def _pointers(tensors):
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


class Kernel:
    """The kernel bound to one EnsembleMLP's parameters (updated in place; they must not be replaced).
    `forward` and `backward` are the training step; calling it is a forward pass alone (evaluation)."""

    def __init__(self, model, lib):
        self.lib = lib
        layers = [*model.hidden, model.out]
        self.params = [p for layer in layers for p in (layer.weight, layer.bias)]
        self.k = layers[0].weight.shape[0]
        self.widths = [layers[0].weight.shape[1], *(layer.weight.shape[2] for layer in layers)]
        self.n_layers = len(layers)
        self.c_widths = (ctypes.c_int * len(self.widths))(*self.widths)
        self.c_weights = _pointers([layer.weight for layer in layers])
        self.c_biases = _pointers([layer.bias for layer in layers])
        self.act = ACTIVATIONS[model.activation]
        # (rows, threads) -> `_buffers`, kept: training and evaluation pass a few row counts (the batch, the
        # last batch, the evaluation chunks), and fresh buffers cost page faults (~2 µs per 4 KiB here)
        self.buffers = {}
        self.kept = None  # (x, its buffers) of the last training forward, for backward

    def _buffers(self, rows):
        """(tensors, hidden-activation pointers, scratch pointer, scratch floats per thread, threads) for `rows`
        rows on torch's threads: the hidden activations [K, rows, width] of every hidden layer, and the threads'
        working memory."""
        key = rows, torch.get_num_threads()
        if key not in self.buffers:
            per_thread = self.lib.mlp_scratch_floats(rows, self.n_layers, self.c_widths)
            tensors = [torch.empty(self.k, rows, w) for w in self.widths[1:-1]] + [torch.empty(key[1] * per_thread)]
            self.buffers[key] = tensors, _pointers(tensors[:-1]), tensors[-1].data_ptr(), per_thread, key[1]
        return self.buffers[key]

    def _forward(self, x, buffers):
        """x [K or expanded, B, ...] (each row contiguous) -> (x as read, z [K, B, O] fresh)."""
        x = x.flatten(2)
        if x.stride(2) != 1 or x.stride(1) != x.shape[2]:
            x = x.contiguous()
        z = torch.empty(self.k, x.shape[1], self.widths[-1])
        _, hidden, scratch, per_thread, threads = buffers
        self.lib.mlp_forward(self.k, x.shape[1], self.n_layers, self.c_widths, x.data_ptr(), x.stride(0),
                             self.c_weights, self.c_biases, hidden, z.data_ptr(), self.act, scratch, per_thread,
                             threads)
        return x, z

    def __call__(self, x):
        """Forward only (evaluation): x [K, N, ...] -> z [K, N, O]."""
        return self._forward(x, self._buffers(x.shape[1]))[1]

    def forward(self, x):
        """The training step's forward: z [K, B, O], keeping what `backward` needs."""
        buffers = self._buffers(x.shape[1])
        x, z = self._forward(x, buffers)
        self.kept = x, buffers
        return z

    def cce_and_gradient(self, z, t):
        """bench.losses._cce_and_gradient of z [K, B, C] (contiguous, from `forward`) and t [K, B, C]:
        (per-example CCE [K, B], softmax(z) - t [K, B, C]), in one pass instead of ten torch operations."""
        if t.stride(2) != 1 or t.stride(1) != t.shape[2]:
            t = t.contiguous()
        z = z.contiguous()
        k, rows, classes = z.shape
        loss, grad = torch.empty(k, rows), torch.empty(k, rows, classes)
        self.lib.softmax_cce(k, rows, classes, z.data_ptr(), t.data_ptr(), t.stride(0), loss.data_ptr(),
                             grad.data_ptr(), torch.get_num_threads())
        return loss, grad

    def backward(self, dz, lr=None):
        """dz [K, B, O] = d objective / dz of the last `forward`: p -= lr * grad in place (lr given), or every
        parameter's .grad set (lr None)."""
        x, (_, hidden, scratch, per_thread, threads) = self.kept  # (the scratch is sized for those threads)
        dz = dz.contiguous()
        grads = None if lr is not None else [torch.empty_like(p) for p in self.params]
        self.lib.mlp_backward(self.k, x.shape[1], self.n_layers, self.c_widths, x.data_ptr(), x.stride(0),
                              self.c_weights, self.c_biases, hidden, dz.data_ptr(), lr or 0.0,
                              _pointers(grads[0::2]) if grads else None, _pointers(grads[1::2]) if grads else None,
                              self.act, scratch, per_thread, threads)
        if grads:
            for p, g in zip(self.params, grads):
                p.grad = g
