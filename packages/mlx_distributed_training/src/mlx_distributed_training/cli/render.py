"""Everything `mlx-train` shows on the terminal: progress bar, lines, summary.

This is the only module of the package that writes to stdout directly.
"""

from __future__ import annotations

import sys

from mlx_distributed_training.training.sft.reporting import format_duration
from mlx_distributed_training.training.sft.trainer import TrainResult
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class ConsoleView:
    """A progress bar with the report lines printed above it."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=False, highlight=False)
        self.progress: Progress | None = None
        self.task_id = None

    def start(self, total_steps: int, first_step: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(
            "train", total=total_steps, completed=first_step
        )

    def advance(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, completed=step)

    def show_line(self, text: str) -> None:
        # Rich breaks long lines at the console width (80 columns when output
        # goes to a file or pipe). Soft wrapping keeps each line whole.
        self.console.print(text, markup=False, soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def show_message(message: str) -> None:
    print(message)


def show_error(message: str) -> None:
    print(f"mlx-train: error: {message}", file=sys.stderr)


def show_summary(result: TrainResult, console: Console | None = None) -> None:
    """Print the closing box: accuracy before/after, tokens, speed, memory, output."""
    console = console or Console(highlight=False)
    table = Table(title="mlx-train summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    before, after = result.exact_match_before, result.exact_match_after
    if after is not None:
        first = f"{before.accuracy:.1%}" if before is not None else "n/a (resumed)"
        table.add_row(
            "exact match (held out)",
            f"{first} -> {after.accuracy:.1%} on {after.total} examples",
        )
    if result.final_valid_loss is not None:
        table.add_row("final valid loss", f"{result.final_valid_loss:.3f}")
    state = result.state
    table.add_row("steps", f"{state.step}/{result.total_steps}")
    table.add_row("trained tokens", f"{state.trained_tokens:,} (loss-bearing)")
    table.add_row("tokens/s", f"{result.tokens_per_second:,.0f}")
    table.add_row("peak memory", f"{result.peak_memory_gb:.2f} GB")
    table.add_row("wall time", format_duration(result.wall_seconds))
    if result.output_path is not None:
        table.add_row("saved to", str(result.output_path))
    console.print(table)
    if after is not None and after.samples:
        console.print("held-out samples after training:")
        for location, expected, greedy, matched in after.samples:
            verdict = "matches" if matched else "differs at the end of"
            console.print(
                f"  expected {expected!r}, greedy reply {verdict} {greedy!r}"
                f"  ({location})",
                markup=False,
            )
