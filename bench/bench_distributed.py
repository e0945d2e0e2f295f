"""Benchmark data parallelism on one machine: throughput and optimizer memory.

1. Throughput: full fine-tuning of a small Llama with DistributedAdamW, one
   rank vs two ranks over the ring backend on loopback, one BLAS/OpenMP thread
   per rank. Each rank trains on its own micro-batch, so two ranks process
   twice the tokens per step. Prints tokens/s of each and the ratio.
2. Memory: peak MLX memory per rank (the maximum over ranks) of full
   fine-tuning on two ranks, optimizer state sharded vs unsharded. Prints
   both and the ratio, for a step built as one lazy graph and for a step
   that evaluates the averaged gradients before the update, as a trainer
   that checks the gradient norm does. The model is about 40 MiB, so the
   gradient buckets are 1 MiB here. With the default 32 MiB, one bucket's
   temporary copies would be as large as this model, while for real models
   they are a few percent.

Run from the repository root:

    uv run python bench/bench_distributed.py

Each measurement runs in fresh processes started through mlx.launch. The
numbers depend on the machine's free cores: two ranks need two idle cores to
approach 2x. The script therefore also prints an estimate from CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}


def rank_variables() -> dict[str, str]:
    """Return the BLAS settings of mlx-train's ranks, with one thread each."""
    from mlx_distributed_training.training.distributed.launch import (
        rank_environment,
    )

    return {**rank_environment(threads_per_rank=1), **ONE_THREAD}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument(
        "--memory-hidden-size",
        type=int,
        default=512,
        help="hidden size of the memory run, where weights dominate",
    )
    parser.add_argument("--memory-sequence-length", type=int, default=32)
    parser.add_argument("--memory-micro-batch-size", type=int, default=2)
    parser.add_argument(
        "--memory-bucket-size-mib",
        type=float,
        default=1.0,
        help="gradient bucket size of the memory run, in MiB",
    )
    parser.add_argument("--bucket-size-mib", type=float, default=32.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shard-state", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--evaluate-gradients", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_worker(args: argparse.Namespace) -> None:
    """Train on this rank and write its measurements to ``--out``."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_distributed_training.training.distributed.group import init_group
    from mlx_distributed_training.training.optimizers.distributed_adamw import (
        DistributedAdamW,
    )
    from mlx_lm.models import llama

    group = init_group("any")
    rank, world_size = group.rank(), group.size()
    mx.random.seed(0)
    model = llama.Model(
        llama.ModelArgs(
            model_type="llama",
            hidden_size=args.hidden_size,
            num_hidden_layers=args.layers,
            intermediate_size=args.hidden_size * 2,
            num_attention_heads=max(1, args.hidden_size // 64),
            rms_norm_eps=1e-5,
            vocab_size=args.vocab_size,
        )
    )
    optimizer = DistributedAdamW(
        1e-4,
        group=group,
        shard_state=args.shard_state,
        bucket_size_bytes=int(args.bucket_size_mib * 2**20),
    )
    mx.eval(model.parameters())

    def loss_fn(model, tokens):
        logits = model(tokens[:, :-1])
        return nn.losses.cross_entropy(logits, tokens[:, 1:], reduction="mean")

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    shape = (args.micro_batch_size, args.sequence_length + 1)
    tokens = mx.random.randint(0, args.vocab_size, shape, key=mx.random.key(rank))

    def step() -> None:
        loss, gradients = loss_and_grad(model, tokens)
        gradients = optimizer.average_gradients(gradients)
        if args.evaluate_gradients:
            # Like a trainer that checks the gradient norm before updating.
            mx.eval(loss, gradients)
        optimizer.apply_gradients(gradients, model)
        # The host waits here for the step, collectives included.
        mx.eval(loss, model.parameters(), optimizer.state)

    for _ in range(args.warmup_steps):
        step()
    mx.reset_peak_memory()
    started = time.perf_counter()
    cpu_started = time.process_time()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started

    tokens_per_step = world_size * args.micro_batch_size * args.sequence_length
    result = {
        "rank": rank,
        "world_size": world_size,
        "tokens_per_second": tokens_per_step * args.steps / elapsed,
        "tokens_per_cpu_second": tokens_per_step * args.steps / cpu_seconds,
        "peak_memory_bytes": mx.get_peak_memory(),
    }
    Path(args.out, f"rank{rank}.json").write_text(json.dumps(result))


def run_ranks(world_size: int, worker_options: list[str]) -> list[dict]:
    """Run the worker on ``world_size`` ranks and return each rank's result."""
    from mlx_distributed_training.training.distributed.launch import (
        LaunchRequest,
        build_launch_command,
        find_free_port_range,
        run_launch,
    )

    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            __file__,
            "--worker",
            "--out",
            out,
            *worker_options,
        ]
        if world_size == 1:
            env = {**os.environ, **rank_variables()}
            subprocess.run(command, check=True, env=env)
        else:
            launch = build_launch_command(
                command,
                LaunchRequest(num_processes=world_size),
                "ring",
                rank_variables(),
                starting_port=find_free_port_range(world_size),
            )
            outcome = run_launch(launch)
            if outcome.exit_code != 0:
                raise SystemExit(f"ranks failed: {outcome.failures}")
        return [
            json.loads(Path(out, f"rank{rank}.json").read_text())
            for rank in range(world_size)
        ]


def main() -> None:
    args = parse_arguments()
    if args.worker:
        run_worker(args)
        return

    timing = [
        "--steps", str(args.steps),
        "--warmup-steps", str(args.warmup_steps),
        "--layers", str(args.layers),
        "--vocab-size", str(args.vocab_size),
    ]  # fmt: skip
    throughput = [
        *timing,
        "--hidden-size", str(args.hidden_size),
        "--sequence-length", str(args.sequence_length),
        "--micro-batch-size", str(args.micro_batch_size),
    ]  # fmt: skip
    memory = [
        *timing,
        "--hidden-size", str(args.memory_hidden_size),
        "--sequence-length", str(args.memory_sequence_length),
        "--micro-batch-size", str(args.memory_micro_batch_size),
        "--bucket-size-mib", str(args.memory_bucket_size_mib),
    ]  # fmt: skip

    single = run_ranks(1, throughput)
    pair = run_ranks(2, throughput)
    one, two = single[0]["tokens_per_second"], pair[0]["tokens_per_second"]
    # Tokens per CPU second of the busiest rank: what the ranks would reach
    # with a core each to themselves, assuming waits in collectives cost no
    # CPU. An estimate for machines where other work shares the cores.
    one_cpu = single[0]["tokens_per_cpu_second"]
    two_cpu = min(r["tokens_per_cpu_second"] for r in pair)
    print(f"BLAS of every rank: {rank_variables()['MLX_DISTRIBUTED_BLAS']}")
    print(
        f"throughput (hidden {args.hidden_size}, {args.layers} layers, "
        f"seq {args.sequence_length}, micro-batch {args.micro_batch_size}, "
        "1 thread per rank)"
    )
    print(f"  1 rank : {one:10,.0f} tokens/s")
    print(f"  2 ranks: {two:10,.0f} tokens/s")
    print(f"  ratio  : {two / one:.2f}x (target >= 1.6x)")
    print(
        f"  estimate with a free core per rank (CPU time): {one_cpu:,.0f} vs "
        f"{two_cpu:,.0f} tokens/s, {two_cpu / one_cpu:.2f}x"
    )

    print(
        f"peak memory per rank, full fine-tuning on 2 ranks "
        f"(hidden {args.memory_hidden_size}, {args.layers} layers, "
        f"{args.memory_bucket_size_mib:g} MiB buckets)"
    )
    patterns = {
        "one lazy graph per step": [],
        "gradients evaluated before the update": ["--evaluate-gradients"],
    }
    for pattern, options in patterns.items():
        full = peak_memory(run_ranks(2, [*memory, *options]))
        sharded = peak_memory(run_ranks(2, [*memory, *options, "--shard-state"]))
        print(f"  {pattern}:")
        print(f"    unsharded optimizer state: {full / 2**20:8.1f} MiB")
        print(f"    sharded optimizer state  : {sharded / 2**20:8.1f} MiB")
        print(f"    ratio: {sharded / full:.2f}x (target <= 0.75x)")


def peak_memory(results: list[dict]) -> int:
    """Return the highest peak memory of any rank, in bytes."""
    return max(result["peak_memory_bytes"] for result in results)


if __name__ == "__main__":
    main()
