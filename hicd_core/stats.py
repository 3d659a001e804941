"""Pure statistics (thresholds, metrics, DeLong, bootstrap, Holm) shared by models and experiments.

Temporary re-export while the module is being written in ``experiments/stats.py``.
"""

from hicd_core.experiments.stats import *  # noqa: F403
