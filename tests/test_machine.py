"""What depends on the machine: the data a run trains on does not (numpy's SIMD code paths change
mnist1d's float64 arrays in their last bits, never the float32 tensors built from them); the summary
records what does (torch's CPU kernels: `environment.cpu_capability`)."""
import json
import os
import subprocess
import sys

import pytest

HASHES = """
import hashlib, json
import numpy as np
from numpy._core._multiarray_umath import __cpu_features__
from mnist1d.data import get_dataset_args, make_dataset
from bench.loaders import Split, mnist1d

def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
args = get_dataset_args()
args.num_samples, args.seed = 5000, 42  # conf/dataset/mnist1d.yaml
raw = make_dataset(args)
data = mnist1d(Split("multiclass", 0, 0.15, 0.15), 5000, 42)
print(json.dumps({"features": [k for k, on in __cpu_features__.items() if on],
                  "raw": digest(np.concatenate([raw["x"], raw["x_test"]])),
                  "data": {k: digest(getattr(data, k).numpy()) for k in
                           ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}}))
"""


def hashes(disabled=None) -> dict:
    env = {**os.environ, **({"NPY_DISABLE_CPU_FEATURES": " ".join(disabled)} if disabled else {})}
    out = subprocess.run([sys.executable, "-c", HASHES], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_mnist1d_is_the_same_data_on_every_numpy_simd_path():
    """The machine's own SIMD path against the next lower one (AVX-512 here: numpy's AVX2 path, what an
    AVX2 machine runs; on an AVX2 machine its baseline path): the generator's float64 arrays may differ
    in their last bits, the standardised float32 tensors a run trains on may not."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    present = [target for target in __cpu_dispatch__ if __cpu_features__.get(target)]
    assert present, "numpy dispatches no SIMD path above its baseline on this machine"
    lower = [present[-1]] if len(present) == 1 else present[1:]  # the highest, or all above the lowest
    mine, other = hashes(), hashes(lower)
    assert not set(lower) & set(other["features"])  # the paths were switched off
    assert other["data"] == mine["data"]


def test_the_summary_records_torchs_cpu_capability():
    import torch

    from bench.machine import environment

    env = environment(torch.device("cpu"))
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["cpu_capability"] in env["nondeterminism"]
