"""Use the inference package's gRPC cluster from training code.

Everything here goes through `mlx_distributed`'s public API (the names in its
`__all__`), so the inference team can change its internals freely.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from mlx_distributed import ClusterConfig, DistributedInferenceClient
from mlx_distributed_training.training.sft.checkpoints import CONFIG_FILE
from mlx_distributed_training.training.utils.atomic import write_text_atomic

Prompt = str | list[dict[str, Any]]


class TrainingInferenceAdapter:
    """Generate with a (possibly fine-tuned) model served by a gRPC cluster."""

    def __init__(self, cluster: str | Path | ClusterConfig | None = None):
        """Connect to the cluster file `cluster`, or start the default one.

        None starts the embedded default model on two local nodes.
        """
        self.client = DistributedInferenceClient(cluster)

    @classmethod
    def serve_adapter(
        cls, adapter_dir: str | Path, local_nodes: int = 2
    ) -> TrainingInferenceAdapter:
        """Serve a trained adapter (a run's `adapter/` folder) on local nodes.

        The base model is the one named in the adapter's saved config.
        """
        adapter_dir = Path(adapter_dir)
        config_path = adapter_dir / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} not found; expected a run's adapter/ folder"
            )
        model = (yaml.safe_load(config_path.read_text()) or {}).get("model")
        cluster = ClusterConfig(
            model=model, adapter=str(adapter_dir), local_nodes=local_nodes
        )
        return cls(cluster)

    def generate_for_training(self, prompts: list[Prompt], **kwargs: Any) -> list[str]:
        """Complete every prompt in one batch through the pipeline.

        A prompt is plain text or a list of chat messages (rendered with the
        model's chat template). Keyword arguments are those of
        `DistributedInferenceClient.generate`: max_tokens, temperature, top_p,
        stop and seed.
        """
        encoded = [
            prompt if isinstance(prompt, str) else self.client.encode_chat(prompt)
            for prompt in prompts
        ]
        results = self.client.generate_batch(encoded, **kwargs)
        return [result.text for result in results]

    def write_completions(
        self, prompts: list[str], path: str | Path, **kwargs: Any
    ) -> Path:
        """Generate completions and save them as `mlx-train` completions data.

        Each line of the JSONL file is `{"prompt": ..., "completion": ...}`, so the
        file can serve as a train split, e.g. to distill a served model.
        """
        completions = self.generate_for_training(list(prompts), **kwargs)
        lines = [
            json.dumps({"prompt": prompt, "completion": completion}) + "\n"
            for prompt, completion in zip(prompts, completions, strict=True)
        ]
        path = Path(path)
        write_text_atomic(path, "".join(lines))
        return path

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> TrainingInferenceAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
