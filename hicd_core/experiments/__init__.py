"""Experiment layer: the level-ablation sweep, the run store, transfer probing, embedding analysis
and the result tables the app draws (statistics themselves live in :mod:`hicd_core.stats`)."""
