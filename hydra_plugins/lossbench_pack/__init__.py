"""lossbench's packing launchers (bench/pack_launcher.py) where Hydra accepts launchers: classes defined
in the hydra_plugins package, which Hydra finds by walking it (`make install` installs the checkout on
sys.path: Hydra cannot see through setuptools' default editable finder). Each is a Hydra launcher with
`bench.pack_launcher.Packing` in front (packing under pack.enabled=true; under auto, the slurm one only);
conf/hydra/launcher/ names them:

    packed    BasicLauncher     the sweep's jobs one after the other in this process (the default)
    parallel  JoblibLauncher    joblib's worker processes (hydra.launcher.n_jobs at once)
    local     LocalLauncher     submitit's local executor (needs the slurm extra)
    slurm     SlurmLauncher     bench.slurm's: one SLURM array job per pack (needs the slurm extra)
"""
from hydra._internal.core_plugins.basic_launcher import BasicLauncher as HydraBasicLauncher
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as HydraJoblibLauncher

from bench.pack_launcher import Packing


class BasicLauncher(Packing, HydraBasicLauncher):
    """Hydra's basic launcher, packing."""


class JoblibLauncher(Packing, HydraJoblibLauncher):
    """Hydra's joblib launcher, packing: at least as many packs as workers."""

    def workers(self) -> int:
        from bench import machine

        n_jobs = int(self.joblib.get("n_jobs") or -1)
        return n_jobs if n_jobs > 0 else max(1, machine.cores() + 1 + n_jobs)  # joblib: -1 = one per core


try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher as SubmititLocalLauncher

    from bench.slurm import SlurmLauncher as BoundedSlurmLauncher

    class LocalLauncher(Packing, SubmititLocalLauncher):
        """submitit's local launcher, packing: one job per pack."""

    class SlurmLauncher(Packing, BoundedSlurmLauncher):
        """bench.slurm's launcher, packing (also under pack.enabled=auto): one job of the array per pack."""

        by_default = True

except ImportError:  # without the slurm extra: no submitit launchers to pack
    pass

