"""lossbench's SLURM launcher (bench/slurm.py) where Hydra accepts launchers: a class defined in the
hydra_plugins package, registered with Hydra's plugin registry. Hydra finds installed plugins by
walking hydra_plugins, which misses this one in an editable install (`make install`: pkgutil does not
see through setuptools' editable finder), so bench.run registers it (`register`) before Hydra starts.
conf/hydra/launcher/slurm.yaml names it."""
from bench.slurm import SlurmLauncher as BoundedSlurmLauncher


class SlurmLauncher(BoundedSlurmLauncher):
    """bench.slurm.SlurmLauncher, under the name Hydra accepts."""


def register() -> None:
    from hydra.core.plugins import Plugins

    Plugins.instance().register(SlurmLauncher)
