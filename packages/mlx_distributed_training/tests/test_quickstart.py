"""The quickstart: the bundled task data, and a real run on the real model."""

import json
import os
import subprocess
import sys

import pytest
from mlx_distributed_training.quickstart import DATA_DIR
from mlx_distributed_training.quickstart.task import SPLIT_SIZES, generate, render_jsonl


def test_bundled_data_matches_its_generator():
    for name, records in generate().items():
        assert (DATA_DIR / f"{name}.jsonl").read_text() == render_jsonl(records)


def test_splits_share_no_dates():
    answers = {
        name: {r["messages"][-1]["content"] for r in records}
        for name, records in generate().items()
    }
    assert not answers["train"] & answers["test"]
    assert not answers["train"] & answers["valid"]
    assert {name: len(records) for name, records in generate().items()} == (SPLIT_SIZES)


# About 3 minutes on two idle cores; far longer when other work shares them.
@pytest.mark.timeout(2700)
def test_quickstart_raises_exact_match_on_real_model(tmp_path):
    """`mlx-train` with the bundled defaults, fewer steps and samples."""
    environment = dict(os.environ)
    # Let mlx-train restart itself with OpenBLAS as it does outside pytest.
    environment.pop("PYTEST_CURRENT_TEST", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_distributed_training.cli.train",
            "--max-steps",
            "30",
            "--exact-match-samples",
            "32",
            "--eval-max-batches",
            "2",
            "--output-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=2600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BLAS: " in result.stdout
    assert "mlx-train summary" in result.stdout
    metrics = json.loads((tmp_path / "run/adapter/metrics.json").read_text())
    assert metrics["exact_match_examples"] == 32
    assert metrics["exact_match_after"] >= metrics["exact_match_before"] + 0.2
