"""Reuse of a checkpoint: find and load it (never running code it names unless trusted), and the one
inference path that predict, evaluate, export and serve share."""
