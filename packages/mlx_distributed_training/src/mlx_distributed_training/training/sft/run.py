"""Set up and run one training run on this rank, from config to saved result."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlx.core as mx
from mlx_distributed_training.configs.training_config import (
    ConfigError,
    DistributedTrainingConfig,
    save_config,
)
from mlx_distributed_training.quickstart import DATA_DIR as QUICKSTART_DATA
from mlx_distributed_training.training.datasets.batching import BatchLayout
from mlx_distributed_training.training.datasets.loading import load_training_data
from mlx_distributed_training.training.datasets.packing import pack_examples
from mlx_distributed_training.training.distributed.group import init_group
from mlx_distributed_training.training.distributed.watchdog import Watchdog
from mlx_distributed_training.training.optimizers.distributed_adamw import (
    DistributedAdamW,
    OptimizerStateError,
)
from mlx_distributed_training.training.sft import checkpoints
from mlx_distributed_training.training.sft.checkpoints import TrainerState
from mlx_distributed_training.training.sft.model_setup import prepare_model
from mlx_distributed_training.training.sft.output_dir import default_output_dir
from mlx_distributed_training.training.sft.packed_attention import (
    PackingUnsupportedError,
    check_packing_support,
)
from mlx_distributed_training.training.sft.reporting import ProgressView, Reporter
from mlx_distributed_training.training.sft.run_folder_lock import RunFolderLock
from mlx_distributed_training.training.sft.schedule import build_schedule
from mlx_distributed_training.training.sft.trainer import (
    Trainer,
    TrainResult,
    plan_total_steps,
)
from mlx_distributed_training.training.utils.atomic import (
    remove_stale_temporaries,
    write_folder_atomic,
)

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A base model that was found but could not be loaded."""


def load_base_model(reference: str | None):
    """Load the model to fine-tune through the inference package's public API.

    Raises `ModelNotFoundError` or `GGUFImportError` as the inference package
    does, and `ModelLoadError` for any other unreadable model file.
    """
    from mlx_distributed import GGUFImportError, ModelNotFoundError, load_model

    try:
        return load_model(reference)
    except (ModelNotFoundError, GGUFImportError):
        raise
    except (OSError, ValueError) as error:
        # NOTE: load_model reports a corrupt config.json or tokenizer file with
        # the parser's message only, so this names the model but not the file.
        raise ModelLoadError(f"cannot load model {reference}: {error}") from error


def run_training(
    config: DistributedTrainingConfig,
    resume_from: Path | None = None,
    view: ProgressView | None = None,
    group: mx.distributed.Group | None = None,
) -> TrainResult:
    """Train on this rank as configured by `config`; rank 0 writes every file.

    Rank 0 locks the run folder for the whole run and first removes what
    killed runs left there. Raises RunFolderInUseError when another process
    holds the lock.
    """
    started = time.perf_counter()
    group = group or init_group(config.backend, config.collective_timeout_s)
    run_dir = Path(config.output_dir or default_output_dir())
    if group.rank() != 0:
        return _train(config, run_dir, resume_from, view, group, started)
    # NOTE: other ranks do not wait for this lock, so when it fails they stop
    # only once the launcher or the collective watchdog ends them.
    with RunFolderLock(run_dir):
        for folder in (run_dir, run_dir / "checkpoints"):
            remove_stale_temporaries(folder)
        return _train(config, run_dir, resume_from, view, group, started)


def _train(
    config: DistributedTrainingConfig,
    run_dir: Path,
    resume_from: Path | None,
    view: ProgressView | None,
    group: mx.distributed.Group,
    started: float,
) -> TrainResult:
    is_writer = group.rank() == 0
    if is_writer and resume_from is None:
        _reject_earlier_checkpoints(run_dir)
    mx.random.seed(config.seed)
    model, tokenizer = load_base_model(config.model)
    adapter_settings = prepare_model(model, config)
    data = load_training_data(
        config.data or QUICKSTART_DATA,
        tokenizer,
        max_seq_length=config.max_seq_length,
        mask_prompt=config.mask_prompt,
    )
    if config.pack_sequences:
        model_type = getattr(model, "model_type", type(model).__name__)
        try:
            check_packing_support(model, model_type)
        except PackingUnsupportedError as error:
            raise ConfigError([str(error)]) from error
        # Packed once from the seed, so every rank and a resumed run see the
        # same rows; epochs and steps then count rows, not examples.
        packing = pack_examples(data.train.examples, config.max_seq_length, config.seed)
        text = (
            f"packing: {len(data.train.examples):,} training examples in "
            f"{len(packing.rows):,} rows of {packing.row_length} tokens "
            f"({packing.fill:.0%} tokens)"
        )
        if is_writer and view is not None:
            view.show_line(text)
        else:
            logger.info(text)
        data.train.examples = packing.rows

    state = None
    saved_optimizer_state = None
    if resume_from is not None:
        checkpoint = checkpoints.resolve_resume_path(resume_from)
        state = checkpoints.read_trainer_state(checkpoint)
        if config.max_steps is not None and config.max_steps < state.step:
            raise ConfigError(
                [
                    f"max_steps: got {config.max_steps}, but the checkpoint is at "
                    f"step {state.step}; expected at least {state.step}"
                ],
                str(checkpoint),
            )
        digest = data.train.digest()
        if state.train_data_digest not in (None, digest):
            raise ConfigError(
                [
                    "data: the training examples differ from those this checkpoint "
                    f"was trained on (digest {digest}, checkpoint "
                    f"{state.train_data_digest}). Other data, max_seq_length, "
                    "mask_prompt, pack_sequences, or seed with packing, change "
                    "them; resume with the run's own, or start a new run"
                ],
                str(checkpoint),
            )
        # A checkpoint written before the digest existed has none, so this
        # run stores it in the checkpoints it writes.
        state.train_data_digest = digest
        saved_optimizer_state = checkpoints.load_checkpoint_weights(checkpoint, model)
        logger.info("resuming from %s at step %d", checkpoint, state.step)

    layout = BatchLayout(
        config.micro_batch_size,
        config.gradient_accumulation_steps,
        group.size(),
        group.rank(),
    )
    total_steps = plan_total_steps(config, layout, data)
    optimizer = DistributedAdamW(
        learning_rate=build_schedule(config, total_steps),
        weight_decay=config.weight_decay,
        group=group,
        shard_state=config.shard_optimizer_state,
    )
    if saved_optimizer_state is not None:
        optimizer.init(model.trainable_parameters())
        try:
            optimizer.load_checkpoint_state(saved_optimizer_state)
        except OptimizerStateError as error:
            path = checkpoint / checkpoints.OPTIMIZER_FILE
            raise checkpoints.CheckpointError(path, str(error)) from error

    watchdog = Watchdog(group, config.collective_timeout_s)
    reporter = Reporter(
        run_dir if is_writer else None,
        config,
        view if is_writer else None,
        resume_step=_logged_steps_to_keep(run_dir, state),
    )
    if is_writer:
        save_config(config, run_dir / "config.yaml")
    trainer = Trainer(
        config,
        model,
        tokenizer,
        data,
        group,
        optimizer,
        reporter,
        adapter_settings,
        run_dir,
        collective=watchdog.collective,
    )
    try:
        with watchdog:
            result = trainer.run(state)
        reporter.close_view()

        # Save the result.
        kind = "model" if config.fine_tune_type == "full" else "adapter"
        result.output_path = run_dir / kind
        result.wall_seconds = time.perf_counter() - started
        summary = summary_metrics(result)
        if is_writer:
            write_folder_atomic(
                result.output_path,
                lambda folder: checkpoints.write_result_folder(
                    folder, model, adapter_settings, config, {"metrics.json": summary}
                ),
            )
            reporter.record("summary", summary)
    finally:
        reporter.close()
    return result


def summary_metrics(result: TrainResult) -> dict:
    before, after = result.exact_match_before, result.exact_match_after
    return {
        "step": result.state.step,
        "total_steps": result.total_steps,
        "trained_tokens": result.state.trained_tokens,
        "tokens_per_second": result.tokens_per_second,
        "peak_memory_gb": result.peak_memory_gb,
        "wall_seconds": result.wall_seconds,
        "final_train_loss": result.state.train_loss,
        "final_valid_loss": result.final_valid_loss,
        "exact_match_before": before.accuracy if before else None,
        "exact_match_after": after.accuracy if after else None,
        "exact_match_examples": after.total if after else 0,
        "baseline_exact_match": result.state.baseline_exact_match,
    }


def _logged_steps_to_keep(run_dir: Path, state: TrainerState | None) -> int | None:
    """Return the last step whose logged events a new run keeps in ``run_dir``.

    A resumed run keeps those up to its checkpoint's step. A fresh run in a
    folder where an earlier run logged without saving a checkpoint keeps
    none of them (-1), so no step appears twice.
    """
    if state is not None:
        return state.step
    if (run_dir / "metrics.jsonl").exists():
        return -1
    return None


def _reject_earlier_checkpoints(run_dir: Path) -> None:
    """Raise ConfigError when a fresh run would overwrite another run's
    checkpoints in ``run_dir``."""
    earlier = checkpoints.list_checkpoints(run_dir)
    if earlier:
        raise ConfigError(
            [
                f"output_dir: {run_dir} already contains checkpoints of an "
                f"earlier run, the newest {earlier[-1].name}. Continue it with "
                f"`mlx-train --resume {run_dir}` or choose another output_dir"
            ]
        )
