"""What depends on the machine: the data a run trains on does not (numpy's SIMD code paths change
mnist1d's float64 arrays in their last bits, never the float32 tensors built from them); the summary
records what does (torch's CPU kernels: `environment.cpu_capability`)."""
import json
import os
import subprocess
import sys

import pytest

HASHES = """
import hashlib, json, sys, tempfile
import numpy as np
from numpy._core._multiarray_umath import __cpu_features__
from omegaconf import OmegaConf
from mnist1d.data import get_dataset_args, make_dataset
from bench.config import CONF_DIR
from bench.datasets import load_dataset

def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
cfg = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(CONF_DIR + "/dataset_split.yaml"),
                                             OmegaConf.load(CONF_DIR + "/dataset/mnist1d.yaml")))
cfg.pop("defaults", None)
cfg["cache_dir"] = tempfile.mkdtemp()  # its own disk cache: the other process's must not answer
args = get_dataset_args()
args.num_samples, args.seed = cfg["n_samples"], cfg["seed"]
raw = make_dataset(args)
data = load_dataset(cfg, seeds=(0, 1))  # two replicates: each its own sample and split
print(json.dumps({"features": [k for k, on in __cpu_features__.items() if on],
                  "raw": digest(np.concatenate([raw["x"], raw["x_test"]])),
                  "data": {k: digest(getattr(data, k).numpy())
                           for k in ("x", "y", "y_train", "train", "val", "test")}}))
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
