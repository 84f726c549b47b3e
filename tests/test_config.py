"""The validation step (bench/config.py): the composed config -> a Plan, before any data loads;
loss=auto; the records the checks are derived from."""
import subprocess
import sys

import pytest
import yaml

from bench import store
from bench.config import check_dataset, validate
from bench.datasets import COMMON_KEYS, DATASETS
from bench.errors import UserError
from bench.losses import CANONICAL
from conftest import CONF, ROOT


@pytest.mark.parametrize("dataset, task", [("digits", "multiclass"), ("breast_cancer", "binary"),
                                           ("diabetes", "regression")])
def test_loss_auto_is_the_canonical_loss_and_the_same_run(make_config, dataset, task):
    auto = validate(make_config(f"dataset={dataset}", "device=cpu"))  # loss=auto is the default
    activation, loss = CANONICAL[task]
    explicit = validate(make_config(f"dataset={dataset}", f"loss={loss}", "device=cpu"))
    assert auto.cfg.loss.name == loss and auto.activation == activation
    assert auto.config == explicit.config and auto.path == explicit.path
    assert auto.path.name == store.run_id(explicit.config)


def test_loss_auto_takes_the_parameters_of_the_loss_it_resolves_to(make_config):
    plan = validate(make_config("loss.label_smoothing=0.1", "device=cpu"))
    assert plan.cfg.loss.name == "cce" and plan.loss_params == {"label_smoothing": 0.1}
    with pytest.raises(UserError, match=r"loss\.delta is not a parameter of loss=cce"):
        validate(make_config("loss.delta=2", "device=cpu"))


def test_config_module_does_not_import_torch():
    code = "import sys, bench.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("overrides, named", [
    (["model.hidden=[0]"], "model.hidden=[0]"),
    (["model=cnn", "dataset=moons", "loss=bce"], "model=cnn needs images"),
    (["model=cnn", "dataset=mnist", "model.kernel_size=4"], "model.kernel_size=4"),
    (["dataset.noise=-1", "dataset=moons"], "dataset.noise=-1"),
    (["dataset=demand", "dataset.min_level=5", "dataset.max_level=2"], "dataset.max_level=2"),
])
def test_mistakes_are_refused_before_any_data_loads(make_config, monkeypatch, overrides, named):
    import bench.datasets
    from bench.run import run

    def no_loading(cfg):
        raise AssertionError("data loaded before the config was checked")

    monkeypatch.setattr(bench.datasets, "load_dataset", no_loading)
    with pytest.raises(UserError, match=named.replace("[", r"\[").replace("]", r"\]")) as error:
        run(make_config(*overrides))
    assert "\n" not in str(error.value)


def test_every_dataset_yaml_is_a_record_and_inherits_the_split_keys():
    base = yaml.safe_load((CONF / "dataset_split.yaml").read_text())
    assert set(base) <= set(COMMON_KEYS)
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (CONF / "dataset").glob("*.yaml")}
    assert set(files) == set(DATASETS)
    for name, config in files.items():
        assert config["defaults"][0] == "/dataset_split@_here_", name
        assert all(config.get(k, object()) != v for k, v in base.items()), name  # overrides only
        record = DATASETS[name]
        assert record.task == (None if config["task"] == "???" else config["task"])
        assert set(record.params) <= {k for k in config if k not in COMMON_KEYS}, name


def test_dataset_checks_name_the_key_value_and_what_is_allowed(make_config):
    node = dict(make_config("dataset=circles").dataset)
    check_dataset(node)
    for change, words in [({"factor": 1.0}, "dataset.factor=1.0 is not allowed; it must be a number in (0, 1)"),
                          ({"n_samples": 0}, "dataset.n_samples=0 is not allowed; it must be an integer > 0"),
                          ({"test_fraction": 1}, "dataset.test_fraction=1 is not allowed; it must be a fraction")]:
        with pytest.raises(UserError) as error:
            check_dataset({**node, **change})
        assert words in str(error.value)
