"""Training: :func:`simcse.training.loop.train` and its pieces (set-up, step functions, losses, batches,
checkpoints, the run directory, metrics, the end of a run). May use evaluation (dev scores, final tables);
never the use layer or the command line."""
