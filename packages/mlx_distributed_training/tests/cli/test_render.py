"""The terminal rendering of `mlx-train`: report lines and the closing summary."""

import io

from mlx_distributed_training.cli.render import ConsoleView, show_summary
from mlx_distributed_training.training.sft.checkpoints import TrainerState
from mlx_distributed_training.training.sft.evaluate import ExactMatchResult
from mlx_distributed_training.training.sft.trainer import TrainResult
from rich.console import Console


def test_summary_lists_exact_match_samples():
    after = ExactMatchResult(
        accuracy=0.5,
        correct=1,
        total=2,
        samples=[
            ("test.jsonl:1", "2021-03-05", "2021-03-05", True),
            ("test.jsonl:2", "2021-04-01", "2021-0", False),
        ],
    )
    result = TrainResult(
        state=TrainerState(step=3, trained_tokens=90),
        total_steps=3,
        exact_match_after=after,
    )
    console = Console(record=True, width=100)

    show_summary(result, console)

    text = console.export_text()
    assert "n/a (resumed) -> 50.0% on 2 examples" in text
    assert (
        "expected '2021-03-05', greedy reply matches '2021-03-05'  (test.jsonl:1)"
    ) in text
    assert (
        "expected '2021-04-01', greedy reply differs at the end of '2021-0'  "
        "(test.jsonl:2)"
    ) in text


def test_long_report_line_unwrapped():
    # Without a terminal rich assumes 80 columns. A log file or pipe must get
    # each report line whole, so that grep and line-based readers see it.
    output = io.StringIO()
    view = ConsoleView(Console(file=output, width=80, highlight=False))
    line = (
        "packing: 12,500,000 training examples in 2,103,450 rows of 16384 "
        "tokens (97% tokens)"
    )
    view.show_line(line)
    assert output.getvalue() == line + "\n"
