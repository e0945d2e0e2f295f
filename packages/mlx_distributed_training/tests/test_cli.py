"""`mlx-train` as a user runs it: a real subprocess on a tiny model."""

import json
import os
import signal
import subprocess
import sys
import time

import mlx.core as mx


def run_cli(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "mlx_distributed_training.cli.train", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def tiny_args(model_dir, data_dir, output_dir, *extra):
    return [
        "--model",
        str(model_dir),
        "--data",
        str(data_dir),
        "--output-dir",
        str(output_dir),
        "--lora-layers",
        "-1",
        "--learning-rate",
        "1e-2",
        "--exact-match-samples",
        "0",
        *extra,
    ]


def test_bad_config_file_exits_2_naming_every_key(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("lora_rank: 0\nbatch_size: 8\n")
    result = run_cli("--config", str(config), "--max-steps", "ten")
    assert result.returncode == 2
    assert f"invalid training config in {config}" in result.stderr
    assert "lora_rank: got 0, expected >= 1" in result.stderr
    assert "batch_size: unknown key" in result.stderr
    assert "max_steps: got 'ten', expected an integer (from command line)" in (
        result.stderr
    )


def test_bad_data_line_exits_1_naming_file_and_line(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "a"}\n{"text": "b"\n')
    result = run_cli(*tiny_args(tiny_model_dir, data, tmp_path / "run"))
    assert result.returncode == 1
    assert f"{data / 'train.jsonl'}:2: invalid JSON" in result.stderr


def test_invalid_hostfile_exits_2_naming_file(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text('{"hosts": [,]}')
    result = run_cli("--hostfile", str(hostfile))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"mlx-train: error: {hostfile}: invalid JSON at line 1"
    )


def test_missing_model_exits_1_naming_it(chat_data_dir, tmp_path):
    missing = tmp_path / "no-model"
    result = run_cli(*tiny_args(missing, chat_data_dir, tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"mlx-train: error: model '{missing}' is not a local folder, a .gguf file "
        "or a Hugging Face repo id (owner/name)"
    )


def test_corrupt_model_config_exits_1_naming_model(chat_data_dir, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{")
    result = run_cli(*tiny_args(model_dir, chat_data_dir, tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"mlx-train: error: cannot load model {model_dir}: "
    )
    assert "Traceback" not in result.stderr


def test_help_documents_config_fields():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--micro-batch-size N" in result.stdout
    assert "Examples per forward/backward pass on one rank." in result.stdout


def test_run_prints_progress_and_summary(tiny_model_dir, chat_data_dir, tmp_path):
    result = run_cli(
        *tiny_args(
            tiny_model_dir,
            chat_data_dir,
            tmp_path / "run",
            "--max-steps",
            "4",
            "--report-interval-steps",
            "2",
            "--exact-match-samples",
            "2",
        )
    )
    assert result.returncode == 0, result.stderr
    assert "step 2/4 | loss " in result.stdout
    assert "exact match at step 0: " in result.stdout
    assert "mlx-train summary" in result.stdout
    assert "held-out samples after training:" in result.stdout
    assert (tmp_path / "run/adapter/adapters.safetensors").is_file()


def test_one_process_with_named_backend_trains(tiny_model_dir, chat_data_dir, tmp_path):
    # -n 1 means this process alone, even when the config names the backend
    # that multi-rank runs use.
    output = tmp_path / "run"
    result = run_cli(
        *tiny_args(tiny_model_dir, chat_data_dir, output, "--max-steps", "1"),
        "-n",
        "1",
        "--backend",
        "ring",
    )
    assert result.returncode == 0, result.stderr
    assert (output / "adapter/adapters.safetensors").is_file()


def test_backend_without_launcher_exits_1_naming_it(chat_data_dir, tmp_path):
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("MLX_")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_distributed_training.cli.train",
            *tiny_args(tmp_path / "model", chat_data_dir, tmp_path / "run"),
            "--backend",
            "ring",
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "mlx-train: error: could not initialize distributed backend 'ring': "
    )


def test_killed_run_resumes_to_same_weights(tiny_model_dir, chat_data_dir, tmp_path):
    common = ["--max-steps", "300", "--save-interval-steps", "10", "--keep-last", "50"]
    straight = tmp_path / "straight"
    result = run_cli(*tiny_args(tiny_model_dir, chat_data_dir, straight, *common))
    assert result.returncode == 0, result.stderr

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlx_distributed_training.cli.train",
            *tiny_args(tiny_model_dir, chat_data_dir, killed, *common),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "checkpoints" / "step-00000020"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "adapter").exists(), "the run finished before the kill"

    result = run_cli("--resume", str(killed))
    assert result.returncode == 0, result.stderr
    expected = mx.load(str(straight / "adapter/adapters.safetensors"))
    got = mx.load(str(killed / "adapter/adapters.safetensors"))
    for name, value in expected.items():
        assert mx.array_equal(value, got[name]).item(), name
    steps = [
        json.loads(line)["step"]
        for line in (killed / "metrics.jsonl").read_text().splitlines()
        if '"checkpoint"' in line
    ]
    assert steps[-1] == 300


def test_resume_with_other_lora_rank_exits_1(tiny_model_dir, chat_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        *tiny_args(tiny_model_dir, chat_data_dir, run_dir, "--max-steps", "2")
    )
    assert result.returncode == 0, result.stderr
    result = run_cli(
        *tiny_args(tiny_model_dir, chat_data_dir, tmp_path / "again"),
        *("--max-steps", "4", "--lora-rank", "4", "--resume", str(run_dir)),
    )
    assert result.returncode == 1
    checkpoint = run_dir / "checkpoints/step-00000002"
    assert f"{checkpoint / 'adapters.safetensors'}: does not match" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_with_incomplete_optimizer_state_exits_1(
    tiny_model_dir, chat_data_dir, tmp_path
):
    run_dir = tmp_path / "run"
    result = run_cli(
        *tiny_args(tiny_model_dir, chat_data_dir, run_dir, "--max-steps", "1")
    )
    assert result.returncode == 0, result.stderr
    state_file = run_dir / "checkpoints/step-00000001/optimizer.safetensors"
    state = mx.load(str(state_file))
    dropped = sorted(name for name in state if name.endswith(".m"))[0]
    del state[dropped]
    mx.save_safetensors(str(state_file), state)
    result = run_cli(
        *tiny_args(tiny_model_dir, chat_data_dir, tmp_path / "again"),
        *("--max-steps", "2", "--resume", str(run_dir)),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"mlx-train: error: {state_file}: optimizer state does not match the "
        f"trainable parameters: missing '{dropped}'"
    )


def test_export_fuses_adapter_into_loadable_model(
    tiny_model_dir, chat_data_dir, tmp_path
):
    from mlx_lm import load

    run_dir = tmp_path / "run"
    result = run_cli(
        *tiny_args(tiny_model_dir, chat_data_dir, run_dir, "--max-steps", "3")
    )
    assert result.returncode == 0, result.stderr
    exported = tmp_path / "fused"
    result = run_cli(
        "export", "--adapter", str(run_dir / "adapter"), "--output", str(exported)
    )
    assert result.returncode == 0, result.stderr
    model, _ = load(str(exported))
    assert not any("lora" in name for name, _ in model.named_modules())
