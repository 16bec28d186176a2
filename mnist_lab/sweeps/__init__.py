"""Sweeps and clusters: the summary of a multirun, and `hydra/launcher=slurm`'s work on SLURM."""
