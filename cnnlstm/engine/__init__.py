"""The training engine: the loop over batches, optimisation schedule, checkpoints, the run log,
multi-process training under torchrun, and the one atomic file write."""
