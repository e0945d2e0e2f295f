"""Training loop building blocks: optimizers and distributed data parallelism."""
