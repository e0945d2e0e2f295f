"""Rank-0 reporting: one metrics dict per report, sent to every sink.

The same names reach the console line, `metrics.jsonl`, TensorBoard and, when
configured, Weights & Biases. Ranks other than 0 get a `Reporter` whose sinks
are all off, so the trainer calls it the same way everywhere.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from mlx_distributed_training.configs.training_config import DistributedTrainingConfig
from mlx_distributed_training.training.utils.atomic import write_text_atomic

logger = logging.getLogger(__name__)


class ProgressView(Protocol):
    """Display of progress to a person (the CLI's console renderer)."""

    def start(self, total_steps: int, first_step: int) -> None: ...
    def advance(self, step: int) -> None: ...
    def show_line(self, text: str) -> None: ...
    def close(self) -> None: ...


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_train_line(metrics: dict[str, Any], total_steps: int) -> str:
    """Format the fixed progress line of one train report."""
    return (
        f"step {metrics['step']}/{total_steps} | loss {metrics['loss']:.3f} | "
        f"lr {metrics['learning_rate']:.1e} | "
        f"tok/s {metrics['tokens_per_second']:,.0f} | "
        f"peak_mem {metrics['peak_memory_gb']:.1f} GB | "
        f"eta {format_duration(metrics['eta_seconds'])}"
    )


def format_eval_line(metrics: dict[str, Any]) -> str:
    text = (
        f"eval step {metrics['step']} | valid_loss {metrics['valid_loss']:.3f} | "
        f"valid_ppl {metrics['valid_perplexity']:.2f}"
    )
    if metrics.get("exact_match") is not None:
        text += f" | exact_match {metrics['exact_match']:.1%}"
    return text


class Reporter:
    """Send metrics to the console view, metrics.jsonl, TensorBoard and W&B."""

    def __init__(
        self,
        run_dir: Path | None,
        config: DistributedTrainingConfig,
        view: ProgressView | None,
        resume_step: int | None = None,
    ):
        """Open the sinks in `run_dir`, or none when `run_dir` is None.

        With `resume_step` S, the events a killed run logged after step S are
        dropped from metrics.jsonl and hidden in TensorBoard, because the
        resumed run logs those steps again.
        """
        self.view = view
        self.total_steps = 0
        self.metrics_path = run_dir / "metrics.jsonl" if run_dir else None
        self.tensorboard = None
        self.wandb_run = None
        if run_dir is None:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        from tensorboardX import SummaryWriter

        purge_step = None
        if resume_step is not None:
            keep_metrics_up_to(self.metrics_path, resume_step)
            # TensorBoard hides the events of earlier files in this folder from
            # this step on, as the tensorboardX 2.6 SummaryWriter docstring
            # describes purge_step.
            purge_step = resume_step + 1
        # tensorboardX names a file by the second it was opened and the host,
        # and truncates a file of that name. The suffix keeps a run resumed
        # within the same second from erasing the killed run's file, and its
        # fixed width keeps the files in creation order when sorted by name.
        self.tensorboard = SummaryWriter(
            str(run_dir / "tensorboard"),
            purge_step=purge_step,
            filename_suffix=f".{time.time_ns():020d}",
        )
        if config.wandb_project:
            self.wandb_run = _start_wandb(run_dir, config)

    @property
    def enabled(self) -> bool:
        return self.metrics_path is not None

    def start(self, total_steps: int, first_step: int) -> None:
        self.total_steps = total_steps
        if self.view:
            self.view.start(total_steps, first_step)

    def advance(self, step: int) -> None:
        if self.view:
            self.view.advance(step)

    def message(self, text: str) -> None:
        if self.view:
            self.view.show_line(text)

    def record(self, event: str, metrics: dict[str, Any]) -> None:
        """Write one event to metrics.jsonl and the scalar values to TensorBoard/W&B."""
        if not self.enabled:
            return
        row = {"event": event, **metrics, "time": time.time()}
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
        step = metrics.get("step", 0)
        scalars = {
            f"{event}/{name}": value
            for name, value in metrics.items()
            if isinstance(value, int | float) and name != "step"
        }
        for name, value in scalars.items():
            self.tensorboard.add_scalar(name, value, step)
        self.tensorboard.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def report_train(self, metrics: dict[str, Any]) -> None:
        self.record("train", metrics)
        self.message(format_train_line(metrics, self.total_steps))

    def report_eval(self, metrics: dict[str, Any]) -> None:
        self.record("eval", metrics)
        self.message(format_eval_line(metrics))

    def report_exact_match(self, step: int, result) -> None:
        metrics = {
            "step": step,
            "exact_match": result.accuracy,
            "exact_match_correct": result.correct,
            "exact_match_examples": result.total,
        }
        self.record("exact_match", metrics)
        self.message(
            f"exact match at step {step}: {result.accuracy:.1%} "
            f"({result.correct}/{result.total} held-out examples)"
        )

    def close_view(self) -> None:
        if self.view:
            self.view.close()
            self.view = None

    def close(self) -> None:
        self.close_view()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def keep_metrics_up_to(path: Path, step: int) -> None:
    """Rewrite metrics.jsonl atomically, keeping only the events up to `step`.

    Events without an integer "step" are kept, because they describe the run
    rather than one step. Lines that are not JSON objects, such as a line cut short by a
    kill, are dropped with a warning.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return
    kept_lines = []
    for number, line in enumerate(lines, start=1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            if line.strip():
                logger.warning("%s:%d: dropped a line that is not JSON", path, number)
            continue
        event_step = event.get("step")
        is_step = isinstance(event_step, int) and not isinstance(event_step, bool)
        if not is_step or event_step <= step:
            kept_lines.append(line + "\n")
    dropped = len(lines) - len(kept_lines)
    if dropped:
        logger.info("dropped %d lines after step %d from %s", dropped, step, path)
    write_text_atomic(path, "".join(kept_lines))


def _start_wandb(run_dir: Path, config: DistributedTrainingConfig) -> Any:
    try:
        import wandb
    except ImportError:
        raise RuntimeError(
            "wandb_project is set but wandb is not installed; install the extra "
            "with `uv sync --extra wandb` or unset wandb_project"
        ) from None
    return wandb.init(
        project=config.wandb_project,
        mode=config.wandb_mode,
        dir=str(run_dir),
        config=config.to_dict(),
    )
