"""Compare pipeline inference through local shards with single-process mlx-lm.

Measures, in one run on the same model and prompts:
1. decode tokens/s and time to first token of `mlx_lm.stream_generate` in
   this process vs. `DistributedInferenceClient.stream` through N local nodes;
2. aggregate tokens/s of `generate_batch` over all prompts vs. the same
   prompts as sequential `generate` calls through the same cluster.

Greedy decoding throughout, so both sides produce the same tokens.

    uv run python bench/bench_inference.py --max-tokens 32 --output bench.json
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import mlx.core as mx
from mlx_distributed import (
    ClusterConfig,
    DistributedInferenceClient,
    ensure_fast_blas,
    load_model,
)
from mlx_lm import stream_generate
from mlx_lm.utils import dequantize_model

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a hash table is in two sentences.",
    "List three fruits that are red.",
    "How many legs does a spider have?",
    "Give me a short tip for learning Python.",
    "What is the boiling point of water in Celsius?",
    "Name a famous painting by Leonardo da Vinci.",
]


def measure_mlx_lm(model, tokenizer, prompt_ids, max_tokens):
    start = time.perf_counter()
    stamps = []
    for _ in stream_generate(model, tokenizer, prompt_ids, max_tokens=max_tokens):
        stamps.append(time.perf_counter())
    return _timings(start, stamps)


def measure_cluster(client, prompt_ids, max_tokens):
    start = time.perf_counter()
    stamps = []
    for chunk in client.stream(prompt_ids, max_tokens=max_tokens):
        if chunk.token_id is not None:
            stamps.append(time.perf_counter())
    return _timings(start, stamps)


def _timings(start, stamps):
    ttft = stamps[0] - start
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0
    return {"ttft_s": ttft, "decode_tok_s": decode, "tokens": len(stamps)}


def summarize(runs):
    return {
        "ttft_s": statistics.median(run["ttft_s"] for run in runs),
        "decode_tok_s": statistics.median(run["decode_tok_s"] for run in runs),
        "tokens": sum(run["tokens"] for run in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="model reference; default model if omitted"
    )
    parser.add_argument("--nodes", type=int, default=2, help="local nodes (shards)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per prompt")
    parser.add_argument("--prompts", type=int, default=8, help="prompts to use (<= 8)")
    parser.add_argument(
        "--dequantize",
        action="store_true",
        help="expand quantized weights to float32 on both sides (faster on CPU)",
    )
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    # Restarts this process with OpenBLAS preloaded on Linux; local nodes get
    # the same environment, so both sides use the same BLAS.
    blas = ensure_fast_blas()
    prompts = PROMPTS[: args.prompts]

    model, tokenizer = load_model(args.model)
    if args.dequantize:
        model = dequantize_model(model)
        model.set_dtype(mx.float32)
        mx.eval(model.parameters())
    prompt_ids = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True
        )
        for prompt in prompts
    ]
    config = ClusterConfig(
        model=args.model, local_nodes=args.nodes, dequantize=args.dequantize
    )
    client = DistributedInferenceClient(config)
    try:
        # Warm both paths once, so no run pays for first-call setup.
        measure_mlx_lm(model, tokenizer, prompt_ids[0], 4)
        measure_cluster(client, prompt_ids[0], 4)

        # Single stream: alternate the two paths prompt by prompt, so load
        # from other processes on the machine hits both alike.
        local_runs, cluster_runs = [], []
        for ids in prompt_ids:
            local_runs.append(measure_mlx_lm(model, tokenizer, ids, args.max_tokens))
            cluster_runs.append(measure_cluster(client, ids, args.max_tokens))
        local = summarize(local_runs)
        cluster = summarize(cluster_runs)

        # Batch vs. sequential, through the cluster.
        start = time.perf_counter()
        sequential = [
            client.generate(ids, max_tokens=args.max_tokens) for ids in prompt_ids
        ]
        sequential_s = time.perf_counter() - start
        start = time.perf_counter()
        batch = client.generate_batch(prompt_ids, max_tokens=args.max_tokens)
        batch_s = time.perf_counter() - start
        sequential_tokens = sum(len(result.token_ids) for result in sequential)
        batch_tokens = sum(len(result.token_ids) for result in batch)
        same_tokens = [r.token_ids for r in sequential] == [r.token_ids for r in batch]
    finally:
        client.close()

    results = {
        "model": args.model or "default (SmolLM2-135M-Instruct)",
        "nodes": args.nodes,
        "dequantized": args.dequantize,
        "blas": f"{blas.name} ({blas.detail})",
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "mlx_lm": local,
        "cluster": cluster,
        "decode_ratio": cluster["decode_tok_s"] / local["decode_tok_s"],
        "ttft_ratio": local["ttft_s"] / cluster["ttft_s"],
        "sequential": {"seconds": sequential_s, "tokens": sequential_tokens},
        "batch": {"seconds": batch_s, "tokens": batch_tokens},
        "batch_speedup": (batch_tokens / batch_s) / (sequential_tokens / sequential_s),
        "batch_tokens_equal_sequential": same_tokens,
    }
    print(
        f"model {results['model']}, {args.nodes} local shards, {len(prompts)} prompts, "
        f"{args.max_tokens} max tokens, greedy, dequantized {args.dequantize}"
    )
    print(f"BLAS: {results['blas']}")
    print(f"{'':24}{'mlx_lm':>12}{'cluster':>12}{'ratio':>8}")
    print(
        f"{'decode tok/s (median)':24}{local['decode_tok_s']:12.2f}"
        f"{cluster['decode_tok_s']:12.2f}{results['decode_ratio']:8.2f}"
    )
    print(
        f"{'TTFT s (median)':24}{local['ttft_s']:12.3f}"
        f"{cluster['ttft_s']:12.3f}{results['ttft_ratio']:8.2f}"
    )
    print(
        f"sequential: {sequential_tokens} tokens in {sequential_s:.2f} s "
        f"({sequential_tokens / sequential_s:.2f} tok/s)"
    )
    print(
        f"batch:      {batch_tokens} tokens in {batch_s:.2f} s "
        f"({batch_tokens / batch_s:.2f} tok/s), "
        f"speedup {results['batch_speedup']:.2f}x, "
        f"same tokens as sequential: {same_tokens}"
    )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
