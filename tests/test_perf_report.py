"""The report's timing benchmark (bench.perf_report): its generated results use the registries' names."""
import pytest

from bench.losses import ACTIVATIONS, LOSSES
from bench.perf_report import synthetic_results
from bench.store import load


@pytest.mark.slow
def test_synthetic_results_use_registry_names(tmp_path):
    runs, history = load(synthetic_results(tmp_path, n_runs=120, seeds=2, epochs=3))
    assert runs["run_id"].nunique() == 120
    assert set(runs["loss"]) <= set(LOSSES) and set(runs["activation"]) <= set(ACTIVATIONS)
    assert {"log_cosh", "softplus"} <= set(runs["loss"]) | set(runs["activation"])
    # cce without softmax is recorded invalid with its reason, as a sweep would
    invalid = runs[runs["status"] == "invalid"]
    assert len(invalid) and (invalid["loss"] == "cce").all() and (invalid["activation"] != "softmax").all()
    assert history["epoch"].max() == 3 and set(history["split"]) == {"train", "val"}
