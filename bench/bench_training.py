"""Benchmark mlx-train against mlx_lm.lora, across ranks, and its memory.

Three comparisons, each run in fresh processes on the same model, data, batch
size, max_seq_length, LoRA settings and BLAS (OpenBLAS preloaded in every
process through mlx_distributed.blas_environment):

1. Speed: mlx-train vs `mlx_lm lora --train` with a YAML config, LoRA,
   prompt masking, constant learning rate, AdamW without weight decay, no
   validation, one epoch over a subset of whole batches. Also mlx-train with
   pack_sequences. Target ratios: >= 1.0x, >= 1.3x packed.
2. Ranks: mlx-train on 2 ranks (`-n 2`) vs 1 rank, one BLAS/OpenMP thread per
   rank, the same micro-batch per rank. Target: >= 1.6x.
3. Memory: peak MLX memory of rank 0 in full fine-tuning on 2 ranks, optimizer
   state sharded vs unsharded. Target: <= 0.75x. bench/bench_distributed.py
   measures the optimizer alone on a synthetic model; this one runs the trainer.

Tokens/s counts processed tokens: every non-padding token of every example fed
to the model (truncated to max_seq_length), over the time of the training loop
without model loading or evaluation. mlx-train reports this rate in its
summary. mlx_lm.lora reports loss-bearing tokens/s, so the bench tokenizes the
subset as mlx_lm does, counts both kinds per epoch and converts the rate. Runs
are interleaved (A, B, A, B) and each figure is the median of the repeats.

    uv run python bench/bench_training.py            # 3 repeats of 24 steps
    uv run python bench/bench_training.py --quick    # 1 repeat of 8 steps

On an idle 2-core machine, --steps 60 --repeats 1 --threads 1 took 10 minutes.
--conversations joins 1 to 8 records into each example, for varied lengths.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import yaml
from bench_distributed import ONE_THREAD

TRAIN_MODULE = "mlx_distributed_training.cli.train"
# Prefix of the line with mlx_lm's exact report values (see run_mlx_lm_lora).
MLX_LM_REPORT = "bench-report "


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder (default: embedded SmolLM2)")
    parser.add_argument(
        "--data", help="folder with train.jsonl (default: the quickstart data)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=24,
        help="optimizer steps of one unpacked single-rank run; the subset is "
        "steps x batch-size examples (rounded up to an even step count)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-scale", type=float, default=20.0)
    parser.add_argument("--lora-layers", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each kind, interleaved"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="BLAS/OpenMP threads of the speed runs, the same for both tools "
        "(default: OpenBLAS's own, one per core)",
    )
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--memory-batch-size", type=int, default=2)
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("speed", "ranks", "memory"),
        help="leave out one comparison (repeatable)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 steps and one repeat: shorter runs, noisier numbers",
    )
    parser.add_argument(
        "--conversations",
        action="store_true",
        help="join 1 to 8 records into each multi-turn conversation, so that "
        "example lengths vary as in real chat data (padding then costs more)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--run-mlx-lm", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 8, 1
    args.steps += args.steps % 2
    return args


# -- data -------------------------------------------------------------------


@dataclass(frozen=True)
class TokenCounts:
    """Tokens of one epoch over the subset, as one tool encodes it."""

    processed: int
    loss_bearing: int


def write_subset(source: Path, destination: Path, count: int) -> None:
    """Copy the first `count` records of `source`/train.jsonl."""
    lines = [
        line
        for line in (source / "train.jsonl").read_text().splitlines()
        if line.strip()
    ]
    if len(lines) < count:
        raise SystemExit(
            f"{source / 'train.jsonl'} has {len(lines)} records; the bench needs "
            f"{count} (--steps x --batch-size)"
        )
    destination.mkdir(parents=True)
    (destination / "train.jsonl").write_text("\n".join(lines[:count]) + "\n")


def count_mlx_lm_tokens(model: str, data: Path, max_seq_length: int) -> TokenCounts:
    """Encode the subset with mlx_lm's own dataset classes and count one epoch.

    mlx_lm's loss mask over targets at positions 1..T keeps positions from
    max(offset, 1) to the (truncated) length, offset being the prompt length.
    A batch holding an example of max_seq_length tokens is max_seq_length
    wide, so its targets stop at position max_seq_length - 1.
    """
    from mlx_lm.tuner.datasets import CacheDataset, load_local_dataset
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(Path(model))
    train, _, _ = load_local_dataset(data, tokenizer, SimpleNamespace(mask_prompt=True))
    dataset = CacheDataset(train)
    processed = loss_bearing = 0
    for index in range(len(dataset)):
        tokens, offset = dataset[index]
        length = min(len(tokens), max_seq_length)
        processed += length
        last = min(length, max_seq_length - 1)
        loss_bearing += max(last - max(offset, 1) + 1, 0)
    return TokenCounts(processed, loss_bearing)


def write_conversations(source: Path, destination: Path, count: int) -> None:
    """Write `count` conversations, each joining the turns of 1 to 8
    consecutive records of `source`/train.jsonl (reused in a cycle)."""
    records = [
        json.loads(line)
        for line in (source / "train.jsonl").read_text().splitlines()
        if line.strip()
    ]
    turns = random.Random(0)
    position = 0
    lines = []
    for _ in range(count):
        messages = []
        for _ in range(turns.randint(1, 8)):
            messages += records[position % len(records)]["messages"]
            position += 1
        lines.append(json.dumps({"messages": messages}))
    destination.mkdir(parents=True)
    (destination / "train.jsonl").write_text("\n".join(lines) + "\n")


# -- runs ---------------------------------------------------------------------


def count_mlx_train_tokens(model: str, data: Path, max_seq_length: int) -> int:
    """Processed tokens of one epoch over the subset as mlx-train encodes it."""
    from mlx_distributed_training.training.datasets.loading import load_training_data
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(Path(model))
    data = load_training_data(data, tokenizer, max_seq_length=max_seq_length)
    return sum(len(example.tokens) for example in data.train.examples)


def run_logged(command: list[str], env: dict[str, str], log: Path) -> str:
    """Run `command`, keep its output in `log`, and return it; exit on failure."""
    completed = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    log.write_text(completed.stdout)
    if completed.returncode != 0:
        tail = "\n".join(completed.stdout.splitlines()[-20:])
        raise SystemExit(
            f"{' '.join(command[:4])} ... failed with exit status "
            f"{completed.returncode}; output in {log}:\n{tail}"
        )
    return completed.stdout


def train_ours(
    args: argparse.Namespace,
    data: Path,
    run_dir: Path,
    env: dict[str, str],
    extra: list[str],
) -> dict:
    """Run mlx-train and return its summary metrics."""
    command = [
        sys.executable, "-m", TRAIN_MODULE,
        "--model", args.model,
        "--data", str(data),
        "--output-dir", str(run_dir),
        "--max-seq-length", str(args.max_seq_length),
        "--lora-rank", str(args.lora_rank),
        "--lora-scale", str(args.lora_scale),
        "--lora-layers", str(args.lora_layers),
        "--learning-rate", str(args.learning_rate),
        "--lr-schedule", "constant",
        "--mask-prompt",
        "--exact-match-samples", "0",
        "--save-interval-steps", "0",
        "--report-interval-steps", "1000000",
        *extra,
    ]  # fmt: skip
    run_logged(command, env, run_dir.with_suffix(".log"))
    events = (run_dir / "metrics.jsonl").read_text().splitlines()
    summaries = [json.loads(line) for line in events if '"summary"' in line]
    return summaries[-1]


def run_mlx_lm_lora(config_path: str) -> None:
    """Run `mlx_lm lora --config CONFIG` in this process and print each report's
    values unrounded as well.

    mlx_lm's own report line rounds loss-bearing tokens/s to an integer, which
    is too coarse on a slow CPU. Only the report hook is wrapped.
    """
    from mlx_lm import lora
    from mlx_lm.cli_ui import TrainUI

    print_report_line = TrainUI.report_train

    def report_train(ui, iteration, train_loss, tokens_per_second, trained_tokens):
        print_report_line(ui, iteration, train_loss, tokens_per_second, trained_tokens)
        values = {
            "iteration": iteration,
            "tokens_per_second": tokens_per_second,
            "trained_tokens": trained_tokens,
        }
        print(MLX_LM_REPORT + json.dumps(values), flush=True)

    TrainUI.report_train = report_train
    sys.argv = ["mlx_lm.lora", "--config", config_path]
    lora.main()


def train_mlx_lm(
    args: argparse.Namespace, data: Path, run_dir: Path, env: dict[str, str]
) -> dict:
    """Run mlx_lm lora from a YAML config and return the values of its last report."""
    iterations = args.steps
    config = {
        "model": args.model,
        "train": True,
        "data": str(data),
        "fine_tune_type": "lora",
        "optimizer": "adamw",
        "optimizer_config": {"adamw": {"weight_decay": 0.0}},
        "mask_prompt": True,
        "num_layers": args.lora_layers,
        "batch_size": args.batch_size,
        "iters": iterations,
        "val_batches": 0,
        "learning_rate": args.learning_rate,
        # One report over the whole run, so its rate covers every step.
        "steps_per_report": iterations,
        "steps_per_eval": iterations + 1,
        "save_every": iterations + 1,
        "adapter_path": str(run_dir),
        "max_seq_length": args.max_seq_length,
        "lora_parameters": {
            "rank": args.lora_rank,
            "scale": args.lora_scale,
            "dropout": 0.0,
        },
        "seed": 0,
    }
    run_dir.mkdir(parents=True)
    config_path = run_dir / "lora.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, __file__, "--run-mlx-lm", str(config_path)]
    output = run_logged(command, env, run_dir.with_suffix(".log"))
    reports = [
        json.loads(line[len(MLX_LM_REPORT) :])
        for line in output.splitlines()
        if line.startswith(MLX_LM_REPORT)
    ]
    if not reports or reports[-1]["iteration"] != iterations:
        raise SystemExit(
            f"no report for iteration {iterations} in {run_dir}.log; mlx_lm's "
            "TrainUI.report_train may have changed"
        )
    return reports[-1]


# -- comparisons ----------------------------------------------------------------


def compare_speed(args, subset: Path, scratch: Path, env: dict[str, str]) -> dict:
    """mlx-train (plain and packed) vs mlx_lm.lora, interleaved."""
    theirs_counts = count_mlx_lm_tokens(args.model, subset, args.max_seq_length)
    ours_processed = count_mlx_train_tokens(args.model, subset, args.max_seq_length)
    ours_runs, packed_runs, theirs_runs = [], [], []
    one_epoch = ["--micro-batch-size", str(args.batch_size), "--num-epochs", "1"]
    for repeat in range(args.repeats):
        ours = train_ours(args, subset, scratch / f"ours-{repeat}", env, one_epoch)
        ours_runs.append(ours["tokens_per_second"])

        report = train_mlx_lm(args, subset, scratch / f"mlx_lm-{repeat}", env)
        # Their loop time is loss-bearing tokens over their rate; the processed
        # rate follows from the processed tokens of the same epoch.
        seconds = report["trained_tokens"] / report["tokens_per_second"]
        theirs_runs.append(theirs_counts.processed / seconds)
        if report["trained_tokens"] != theirs_counts.loss_bearing:
            raise SystemExit(
                f"mlx_lm trained {report['trained_tokens']} loss-bearing "
                f"tokens but the bench counted {theirs_counts.loss_bearing}; the "
                "token count does not match its batches"
            )

        packed = train_ours(
            args,
            subset,
            scratch / f"packed-{repeat}",
            env,
            [*one_epoch, "--pack-sequences"],
        )
        packed_runs.append(packed["tokens_per_second"])
        print(
            f"  speed repeat {repeat + 1}: mlx-train {ours_runs[-1]:,.0f}, "
            f"mlx_lm {theirs_runs[-1]:,.0f}, packed {packed_runs[-1]:,.0f} tokens/s",
            flush=True,
        )
    return {
        "ours": statistics.median(ours_runs),
        "packed": statistics.median(packed_runs),
        "theirs": statistics.median(theirs_runs),
        "ours_processed": ours_processed,
        "ours_loss_tokens": ours["trained_tokens"],
        "theirs_counts": theirs_counts,
    }


def compare_ranks(args, subset: Path, scratch: Path, env: dict[str, str]) -> dict:
    """mlx-train on 1 rank vs 2 ranks, one thread per rank, interleaved."""
    one_thread = {**env, **ONE_THREAD}
    options = ["--micro-batch-size", str(args.batch_size), "--num-epochs", "1"]
    one_runs, two_runs = [], []
    for repeat in range(args.repeats):
        one = train_ours(args, subset, scratch / f"rank1-{repeat}", one_thread, options)
        one_runs.append(one["tokens_per_second"])
        two = train_ours(
            args, subset, scratch / f"rank2-{repeat}", one_thread, ["-n", "2", *options]
        )
        two_runs.append(two["tokens_per_second"])
        print(
            f"  ranks repeat {repeat + 1}: 1 rank {one_runs[-1]:,.0f}, "
            f"2 ranks {two_runs[-1]:,.0f} tokens/s",
            flush=True,
        )
    return {"one": statistics.median(one_runs), "two": statistics.median(two_runs)}


def compare_memory(args, subset: Path, scratch: Path, env: dict[str, str]) -> dict:
    """Peak memory of rank 0, full fine-tuning on 2 ranks, sharded vs not."""
    one_thread = {**env, **ONE_THREAD}
    options = [
        "-n", "2",
        "--fine-tune-type", "full",
        "--micro-batch-size", str(args.memory_batch_size),
        "--max-steps", str(args.memory_steps),
    ]  # fmt: skip
    full = train_ours(args, subset, scratch / "memory-full", one_thread, options)
    sharded = train_ours(
        args,
        subset,
        scratch / "memory-sharded",
        one_thread,
        [*options, "--shard-optimizer-state"],
    )
    return {"full": full["peak_memory_gb"], "sharded": sharded["peak_memory_gb"]}


# -- report -------------------------------------------------------------------


def print_report(args, results: dict, seconds: float) -> None:
    load = os.getloadavg()[0]
    print()
    print(
        f"model {args.model}\n"
        f"batch size {args.batch_size}, max_seq_length {args.max_seq_length}, "
        f"LoRA rank {args.lora_rank} scale {args.lora_scale:g} on the last "
        f"{args.lora_layers} layers, {args.steps * args.batch_size} "
        f"{'conversations of 1-8 records' if args.conversations else 'examples'}, "
        f"median of {args.repeats} run(s); {args.threads or 'default'} BLAS "
        f"threads in the speed runs; {os.cpu_count()} CPUs, load "
        f"average {load:.1f}; {seconds / 60:.1f} min"
    )
    if "speed" in results:
        speed = results["speed"]
        counts = speed["theirs_counts"]
        print(f"\n{'processed tokens/s':<44}{'tokens/s':>12}{'ratio':>9}")
        rows = [
            ("mlx_lm.lora", speed["theirs"], None),
            ("mlx-train", speed["ours"], "target >= 1.0x"),
            ("mlx-train, pack_sequences", speed["packed"], "target >= 1.3x"),
        ]
        for name, rate, target in rows:
            ratio = f"{rate / speed['theirs']:8.2f}x" if target else ""
            print(f"{name:<44}{rate:>12,.0f}{ratio:>9}  {target or ''}")
        print(
            f"  tokens in one epoch: mlx_lm {counts.processed:,} processed, "
            f"{counts.loss_bearing:,} loss-bearing; mlx-train "
            f"{speed['ours_processed']:,} processed, "
            f"{speed['ours_loss_tokens']:,} loss-bearing"
        )
    if "ranks" in results:
        ranks = results["ranks"]
        print(f"\n{'mlx-train, 1 thread per rank':<44}{'tokens/s':>12}{'ratio':>9}")
        print(f"{'1 rank':<44}{ranks['one']:>12,.0f}")
        ratio = ranks["two"] / ranks["one"]
        print(f"{'2 ranks':<44}{ranks['two']:>12,.0f}{ratio:8.2f}x  target >= 1.6x")
    if "memory" in results:
        memory = results["memory"]
        print(f"\n{'full fine-tuning, 2 ranks, rank 0 peak':<44}{'GB':>12}{'ratio':>9}")
        print(f"{'optimizer state unsharded':<44}{memory['full']:>12.3f}")
        ratio = memory["sharded"] / memory["full"]
        print(
            f"{'optimizer state sharded':<44}{memory['sharded']:>12.3f}"
            f"{ratio:8.2f}x  target <= 0.75x"
        )


def main() -> None:
    args = parse_arguments()
    if args.run_mlx_lm:
        run_mlx_lm_lora(args.run_mlx_lm)
        return
    from mlx_distributed import blas_environment, resolve_model_path
    from mlx_distributed_training.quickstart import DATA_DIR

    args.model = str(args.model or resolve_model_path(None))
    data = Path(args.data or DATA_DIR)
    env = blas_environment(blas="openblas")
    env["PYTHONUNBUFFERED"] = "1"
    speed_env = dict(env)
    if args.threads is not None:
        speed_env.update({name: str(args.threads) for name in ONE_THREAD})
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        subset = scratch / "data"
        if args.conversations:
            write_conversations(data, subset, args.steps * args.batch_size)
        else:
            write_subset(data, subset, args.steps * args.batch_size)
        memory_subset = scratch / "memory-data"
        write_subset(data, memory_subset, 2 * args.memory_batch_size * 4)
        results = {}
        if "speed" not in args.skip:
            results["speed"] = compare_speed(args, subset, scratch, speed_env)
        if "ranks" not in args.skip:
            results["ranks"] = compare_ranks(args, subset, scratch, env)
        if "memory" not in args.skip:
            results["memory"] = compare_memory(args, memory_subset, scratch, env)
        print_report(args, results, time.perf_counter() - started)
    finally:
        if args.keep:
            print(f"\nrun folders and logs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
