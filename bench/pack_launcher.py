"""The launchers' packing: a sweep's jobs grouped into packs (bench.pack), one launched job per pack.

`Packing` goes in front of a Hydra launcher (hydra_plugins/lossbench_pack: the basic one, joblib's,
submitit's): its `launch` composes every job's config, forms the packs (`bench.pack.form_packs`: those
of one pack key, at most pack.max_members members each, and at least as many packs as the launcher
runs jobs at once), and hands the launcher one job per pack, whose task (`PackTask`) trains its
configurations together (`bench.pack.run_pack`) and reports each one as the sweep reports a job: its
outcome record and its progress line (the sweep's callbacks, bench.sweep), one per configuration. The
launcher itself runs the packs without callbacks of its own (a pack is not a run of the sweep).

Job numbers: a configuration keeps one number for its outcome record; the first configuration of pack
p gets the number the launcher gives pack p's job (the sweep's first number + p), the others the
numbers after the packs', so a launcher that reads a job's outcome by its number (bench.slurm) reads
its first configuration's. With pack.enabled=false, or a job of one configuration, the job is the
sweep's job as without packing.
"""
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict


class Quiet:
    """Callbacks that do nothing: a launcher running packs reports no job of its own."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class PackTask:
    """The task of a pack's job: its configurations' overrides by the job's number, trained as one pack,
    each reported to the sweep's callbacks as the job it stands for. Picklable (a joblib worker or a
    submitit job gets it with the launcher)."""

    def __init__(self, table, task_function, callbacks, config, config_loader, clock_epochs):
        self.table = table  # pack job number -> [(configuration's job number, its overrides)]
        self.task_function, self.callbacks = task_function, callbacks
        self.config, self.config_loader, self.clock_epochs = config, config_loader, clock_epochs

    def __call__(self, task_cfg: DictConfig):
        import multiprocessing

        from bench import stopping

        if multiprocessing.current_process().name != "MainProcess":  # a parallel launcher's worker
            with stopping.worker_job():
                return self.run(task_cfg)
        return self.run(task_cfg)

    def run(self, task_cfg: DictConfig):
        """The pack's configurations trained and reported -> [(job number, outcome)] of each."""
        from bench.console import note_figure
        from bench.pack import run_pack

        members = self.table[int(HydraConfig.get().job.num)]
        configs = [self.compose(number, overrides) for number, overrides in members]
        for config in configs:
            self.callbacks.on_job_start(config=config, task_function=self.task_function)
        if len(members) == 1:  # the job is that configuration's: the sweep's own task, as without packing
            note_figure(None)
            results = [self.run_alone(task_cfg)]
        else:
            results = [(outcome, figure) for outcome, figure in run_pack([without_hydra(c) for c in configs],
                                                                          self.clock_epochs)]
        for config, (outcome, figure) in zip(configs, results):
            note_figure(figure)
            self.report(config, outcome)
        return [(number, outcome if isinstance(outcome, str) else "failed") for (number, _), (outcome, _) in
                zip(members, results)]

    def compose(self, number: int, overrides) -> DictConfig:
        """A configuration's sweep config (the hydra node included), as the launchers compose a job's."""
        config = self.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{number}"
            config.hydra.job.num = number
        return config

    def run_alone(self, task_cfg):
        """(outcome, figure) of the sweep's own task on one configuration; an exception it lets through
        (none should) is that job's failure, as Hydra's run_job records it."""
        from bench.console import LAST

        try:
            return self.task_function(task_cfg), LAST.get("figure")
        except Exception as error:
            return error, None

    def report(self, config, outcome) -> None:
        """The sweep's callbacks on the end of the job `config` stands for (its outcome record and
        progress line: bench.sweep.SweepProgress)."""
        job_return = JobReturn(overrides=list(config.hydra.overrides.task), cfg=without_hydra(config),
                               hydra_cfg=config)
        job_return.status = JobStatus.COMPLETED if isinstance(outcome, str) else JobStatus.FAILED
        job_return.return_value = outcome
        self.callbacks.on_job_end(config=config, job_return=job_return)


def without_hydra(config: DictConfig) -> DictConfig:
    """The task's config (what bench.run.main receives): the sweep config less its hydra node."""
    task = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    with open_dict(task):
        del task["hydra"]
    return task


class Packing:
    """In front of a Hydra launcher class: packs the sweep's jobs (module docstring). `workers()`: how
    many jobs the launcher runs at once (at least that many packs are formed); `by_default`: whether it
    packs under pack.enabled=auto (a cluster launcher, where every job costs a scheduler round-trip, a
    start-up and a data load)."""

    by_default = False

    def workers(self) -> int:
        return 1

    def launch(self, job_overrides, initial_job_idx):
        from bench import run as bench_run
        from bench.pack import form_packs

        settings = self.config.get("pack") or {}
        enabled = settings.get("enabled", "auto")
        enabled = self.by_default if enabled == "auto" else enabled
        if not enabled or bench_run._explain or len(job_overrides) < 2:
            return super().launch(job_overrides, initial_job_idx)
        loader = self.hydra_context.config_loader
        configs = [without_hydra(loader.load_sweep_config(self.config, list(o))) for o in job_overrides]
        packs = form_packs(configs, int(settings.get("max_members", 1024)), self.workers())
        numbers, later = {}, initial_job_idx + len(packs)
        for p, pack in enumerate(packs):
            numbers[pack[0]] = initial_job_idx + p
            for i in pack[1:]:
                numbers[i], later = later, later + 1
        table = {initial_job_idx + p: [(numbers[i], list(job_overrides[i])) for i in pack]
                 for p, pack in enumerate(packs)}
        sweep_callbacks, task_function = self.hydra_context.callbacks, self.task_function
        task = PackTask(table, task_function, sweep_callbacks, self.config, loader,
                        int(settings.get("clock_epochs", 3)))
        self.hydra_context = HydraContext(config_loader=loader, callbacks=Quiet())
        self.task_function = task
        self.pack_members = {number: [n for n, _ in members] for number, members in table.items()}  # (bench.slurm)
        try:
            returns = super().launch([job_overrides[pack[0]] for pack in packs], initial_job_idx)
        finally:
            self.hydra_context = HydraContext(config_loader=loader, callbacks=sweep_callbacks)
            self.task_function = task_function
        outcomes = {}
        for pack, job_return in zip(packs, returns):
            value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
            if isinstance(value, list):
                outcomes.update(dict(value))
            else:  # the pack's job ended without its configurations' outcomes (a crash outside them, a lost
                # cluster job): each one failed, reported here unless its launcher reported it (bench.slurm
                # reports the first, with why), with the first one's reason where there is one
                from bench.console import note_figure
                from bench.sweep import read_outcome

                first = read_outcome(Path(str(self.config.hydra.sweep.dir)), numbers[pack[0]])
                note_figure((first or {}).get("figure"))
                for i in pack:
                    outcomes[numbers[i]] = "failed"
                    if i != pack[0] or first is None:
                        task.report(task.compose(numbers[i], job_overrides[i]), "failed")
        returned = []
        for i, overrides in enumerate(job_overrides):
            job_return = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            job_return.return_value = outcomes[numbers[i]]
            returned.append(job_return)
        return returned
