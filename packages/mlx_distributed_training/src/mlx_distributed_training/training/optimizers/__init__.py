"""Optimizers that average gradients and shard their state across ranks."""
