"""sdegen's sweeper (``hydra.sweeper._target_`` in configs/hydra/default.yaml), here because Hydra builds
sweepers only from classes of the ``hydra_plugins`` package; the code is ``sdegen.runtime.sweeps``.

Hydra's plugin scan executes this module again after reloading its own ``BasicSweeper``, so the class is
defined here, against the ``BasicSweeper`` of the moment."""

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from sdegen.runtime.sweeps import SdeSweeps


class SdeSweeper(SdeSweeps, BasicSweeper):
    """Hydra's basic sweeper with ``SdeSweeps``."""
