"""The training loop: micro-steps, gradient averaging, steps, evaluation, saves.

Loss normalisation: every rank has the whole global batch, so each computes
the global number of target tokens without communicating. A rank scales its
summed loss by `world_size / global_targets`. Averaging the gradients over the
ranks then yields exactly the gradient of the per-token mean over the global
batch, whatever the split into ranks and micro-steps. This is what makes
2 ranks x micro-batch 4 equal 1 rank x batch 8.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_map
from mlx_distributed_training.configs.training_config import DistributedTrainingConfig
from mlx_distributed_training.training.datasets.batching import (
    BatchLayout,
    collate,
    count_targets,
    epoch_order,
    global_batch,
    rank_micro_batches,
)
from mlx_distributed_training.training.datasets.loading import TrainingData
from mlx_distributed_training.training.sft import checkpoints
from mlx_distributed_training.training.sft.checkpoints import TrainerState
from mlx_distributed_training.training.sft.evaluate import (
    ExactMatchResult,
    exact_match,
    perplexity,
    validation_loss,
)
from mlx_distributed_training.training.sft.loss import TokenLoss
from mlx_distributed_training.training.sft.reporting import Reporter

logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss or the gradients stopped being finite numbers."""


@dataclass
class TrainResult:
    """Outcome of a finished run, for the closing summary."""

    state: TrainerState
    total_steps: int
    exact_match_before: ExactMatchResult | None = None
    exact_match_after: ExactMatchResult | None = None
    final_valid_loss: float | None = None
    peak_memory_gb: float = 0.0
    tokens_per_second: float = 0.0
    processed_tokens: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    output_path: Path | None = None


def plan_total_steps(
    config: DistributedTrainingConfig, layout: BatchLayout, data: TrainingData
) -> int:
    """Number of steps the run will take (an estimate when max_tokens decides)."""
    per_epoch = layout.steps_per_epoch(len(data.train.examples))
    limits = []
    if config.max_steps is not None:
        limits.append(config.max_steps)
    if config.num_epochs is not None:
        limits.append(max(math.ceil(config.num_epochs * per_epoch), 1))
    if config.max_tokens is not None:
        targets_per_step = max(data.train.target_count / per_epoch, 1.0)
        limits.append(max(math.ceil(config.max_tokens / targets_per_step), 1))
    return min(limits) if limits else per_epoch


def peak_memory_gb() -> float:
    return mx.get_peak_memory() / 1e9


class Trainer:
    """Runs the steps of one training run on one rank."""

    def __init__(
        self,
        config: DistributedTrainingConfig,
        model: nn.Module,
        tokenizer,
        data: TrainingData,
        group: mx.distributed.Group,
        optimizer,
        reporter: Reporter,
        adapter_settings: dict,
        run_dir: Path,
        collective: Callable[[str], AbstractContextManager] | None = None,
    ):
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.data = data
        self.group = group
        self.optimizer = optimizer
        self.reporter = reporter
        self.adapter_settings = adapter_settings
        self.run_dir = run_dir
        # Marks where this rank waits on other ranks, for the watchdog.
        self.collective = collective or (lambda label: contextlib.nullcontext())
        self.is_writer = group.rank() == 0
        self.layout = BatchLayout(
            config.micro_batch_size,
            config.gradient_accumulation_steps,
            group.size(),
            group.rank(),
        )
        self.total_steps = plan_total_steps(config, self.layout, data)
        self.token_loss = TokenLoss.for_model(model)
        if not self.token_loss.head_at_targets:
            logger.info(
                "the model's logits are more than its output head applied to its "
                "body's output, so the loss computes logits at every position"
            )
        self.loss_and_grad = nn.value_and_grad(model, self.token_loss.scaled)

    # -- one step ---------------------------------------------------------

    def _micro_steps(self, indices) -> tuple[mx.array, dict[str, mx.array]]:
        """Run this rank's micro-steps of one global batch; sum their gradients.

        Returns the summed loss and the summed gradients as a flat
        ``{name: array}`` dict. With a sharded optimizer state the last
        micro-step stays lazy, so that the optimizer runs its backward pass
        bucket by bucket and never keeps the full gradients.
        """
        global_targets = count_targets(self.data.train.examples, indices)
        scale = self.group.size() / max(global_targets, 1)
        summed_grads = None
        summed_loss = mx.array(0.0)
        micro_batches = rank_micro_batches(indices, self.layout)
        for number, micro_indices in enumerate(micro_batches, start=1):
            batch = collate(self.data.train.examples, micro_indices)
            if batch is None:
                continue
            loss, grads = self.loss_and_grad(self.model, batch, scale)
            if summed_grads is None:
                summed_grads = grads
            else:
                summed_grads = tree_map(mx.add, summed_grads, grads)
            summed_loss = summed_loss + loss
            if number < len(micro_batches) or not self.optimizer.shard_state:
                # Wait for this micro-step so its activations can be freed.
                mx.eval(summed_grads, summed_loss)
        if summed_grads is None:
            # No example for this rank in a short final batch: it still has to
            # join the gradient all-reduce, with zeros.
            summed_grads = tree_map(mx.zeros_like, self.model.trainable_parameters())
        return summed_loss, dict(tree_flatten(summed_grads))

    def _step(self, indices) -> float:
        """One optimizer step on one global batch; returns its mean token loss."""
        # Random numbers (dropout) depend only on seed and step, so a resumed
        # run draws the same ones as an uninterrupted run.
        step_seed = np.random.SeedSequence([self.config.seed, self.state.step])
        mx.random.seed(int(step_seed.generate_state(1)[0]))
        local_loss, grads = self._micro_steps(indices)

        # Collectives: every rank runs these in this order on every step. The
        # host waits here, on the all-reduces too, because the finiteness
        # check needs the values. They are identical on every rank, so all
        # ranks take one branch.
        with self.collective(f"step {self.state.step + 1}"):
            # A sharded state reduces the gradients bucket by bucket here and
            # keeps only this rank's slices. The last micro-step's backward
            # pass runs here too, so the collective timeout covers it.
            grads = self.optimizer.reduce_gradients(grads)
            loss = mx.distributed.all_sum(local_loss, group=self.group)
            loss = loss / self.group.size()
            grad_norm = self.optimizer.gradient_norm(grads)
            mx.eval(loss, grad_norm)
        loss_value, norm_value = loss.item(), grad_norm.item()
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            raise TrainingDivergedError(
                f"training diverged at step {self.state.step + 1}: loss is "
                f"{loss_value}, gradient norm is {norm_value}; no checkpoint was "
                "written for this step. Lower learning_rate or set max_grad_norm, "
                "then resume from the last checkpoint"
            )
        if self.config.max_grad_norm is not None:
            grads = self.optimizer.clip_gradients(
                grads, grad_norm, self.config.max_grad_norm
            )
        # A sharded optimizer state gathers the updated slices from every rank.
        with self.collective(f"update at step {self.state.step + 1}"):
            self.optimizer.update(self.model, grads)
            mx.eval(self.model.trainable_parameters(), self.optimizer.state)
        return loss_value

    # -- the run ----------------------------------------------------------

    def _evaluate(self) -> float | None:
        if self.data.valid is None:
            return None
        with self.collective(f"validation at step {self.state.step}"):
            loss = validation_loss(
                self.model,
                self.token_loss,
                self.data.valid.examples,
                self.config.micro_batch_size,
                self.config.eval_max_batches,
                self.group,
            )
        self.reporter.report_eval(
            {
                "step": self.state.step,
                "valid_loss": loss,
                "valid_perplexity": perplexity(loss),
            }
        )
        return loss

    def _exact_match(self) -> ExactMatchResult | None:
        references = self.data.held_out_references()
        if not references or self.config.exact_match_samples == 0:
            return None
        chosen = references[: self.config.exact_match_samples]
        with self.collective(f"exact match at step {self.state.step}"):
            result = exact_match(self.model, self.tokenizer, chosen, self.group)
        self.reporter.report_exact_match(self.state.step, result)
        return result

    def _save(self) -> None:
        # Gathering a sharded optimizer state is a collective: all ranks call it.
        with self.collective(f"checkpoint at step {self.state.step}"):
            optimizer_state = self.optimizer.checkpoint_state()
            mx.eval(optimizer_state)
        if not self.is_writer:
            return
        path = checkpoints.save_checkpoint(
            self.run_dir,
            self.model,
            optimizer_state,
            self.state,
            self.adapter_settings,
            self.config,
        )
        self.reporter.record("checkpoint", {"step": self.state.step, "path": str(path)})
        checkpoints.prune_checkpoints(self.run_dir, self.config.keep_last)

    def _should_stop(self) -> bool:
        if self.state.step >= self.total_steps:
            return True
        limit = self.config.max_tokens
        return limit is not None and self.state.trained_tokens >= limit

    def run(self, state: TrainerState | None = None) -> TrainResult:
        """Train from `state` (a fresh run when None) to the configured limit."""
        self.state = state or TrainerState(train_data_digest=self.data.train.digest())
        result = TrainResult(self.state, self.total_steps)
        examples = self.data.train.examples
        steps_per_epoch = self.layout.steps_per_epoch(len(examples))

        if self.state.step == 0:
            result.exact_match_before = self._exact_match()
            if result.exact_match_before is not None:
                self.state.baseline_exact_match = result.exact_match_before.accuracy

        self.reporter.start(self.total_steps, self.state.step)
        self.model.train()
        window_start = time.perf_counter()
        window_tokens = 0
        window_losses: list[float] = []
        run_start = time.perf_counter() - self.state.elapsed_seconds
        while not self._should_stop():
            order = epoch_order(len(examples), self.config.seed, self.state.epoch)
            indices = global_batch(order, self.layout, self.state.batch_in_epoch)

            # Step.
            step_start = time.perf_counter()
            window_losses.append(self._step(indices))
            result.train_seconds += time.perf_counter() - step_start
            self.state.step += 1
            self.state.trained_tokens += count_targets(examples, indices)
            processed = sum(len(examples[i].tokens) for i in indices)
            window_tokens += processed
            result.processed_tokens += processed
            self.state.batch_in_epoch += 1
            if self.state.batch_in_epoch >= steps_per_epoch:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
            self.state.elapsed_seconds = time.perf_counter() - run_start
            self.reporter.advance(self.state.step)

            # Report.
            step = self.state.step
            last = self._should_stop()
            if step % self.config.report_interval_steps == 0 or last:
                seconds = time.perf_counter() - window_start
                self.state.train_loss = sum(window_losses) / len(window_losses)
                rate = window_tokens / max(seconds, 1e-9)
                remaining = self.total_steps - step
                self.reporter.report_train(
                    {
                        "step": step,
                        "loss": self.state.train_loss,
                        "learning_rate": self.optimizer.learning_rate.item(),
                        "tokens_per_second": rate,
                        "trained_tokens": self.state.trained_tokens,
                        "peak_memory_gb": peak_memory_gb(),
                        "eta_seconds": remaining * seconds / len(window_losses),
                    }
                )
                window_start, window_tokens, window_losses = time.perf_counter(), 0, []

            # Evaluate.
            interval = self.config.eval_interval_steps
            if last or (interval and step % interval == 0):
                self.state.valid_loss = self._evaluate()

            # Save.
            interval = self.config.save_interval_steps
            if interval and step % interval == 0 and not last:
                self._save()

        if self.state.step > 0 and self.config.save_interval_steps:
            self._save()
        result.exact_match_after = self._exact_match()
        result.final_valid_loss = self.state.valid_loss
        result.peak_memory_gb = peak_memory_gb()
        result.tokens_per_second = result.processed_tokens / max(
            result.train_seconds, 1e-9
        )
        return result
