"""mlx.launch front end: argument splitting, command building, real launches."""

import json
import os
import sys
from pathlib import Path

import pytest
from mlx_distributed_training.training.distributed.hostfile import HostfileError
from mlx_distributed_training.training.distributed.launch import (
    LaunchError,
    LaunchRequest,
    RankFailure,
    build_launch_command,
    find_free_port_range,
    launch_ranks,
    rank_environment,
    run_launch,
    split_launch_arguments,
)

PROBE = Path(__file__).parents[1] / "rank_programs" / "launch_probe.py"


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "2", "--config", "a.yaml"],
        ["--config", "a.yaml", "-n2"],
        ["-n=2", "--config", "a.yaml"],
    ],
)
def test_split_removes_process_count(argv):
    request, rest = split_launch_arguments(argv)
    assert request == LaunchRequest(num_processes=2)
    assert rest == ["--config", "a.yaml"]


@pytest.mark.parametrize("argv", [["--hostfile", "h.json"], ["--hostfile=h.json"]])
def test_split_removes_hostfile(argv):
    request, rest = split_launch_arguments([*argv, "--max-steps", "3"])
    assert request == LaunchRequest(hostfile=Path("h.json"))
    assert rest == ["--max-steps", "3"]


def test_split_without_launch_options_returns_none():
    assert split_launch_arguments(["--max-steps", "3"]) == (None, ["--max-steps", "3"])


def test_split_one_process_trains_in_this_process():
    request, rest = split_launch_arguments(["-n", "1", "--max-steps", "3"])
    assert request == LaunchRequest(num_processes=1)
    assert request.in_process
    assert rest == ["--max-steps", "3"]


def test_split_several_processes_launch():
    request, _ = split_launch_arguments(["-n", "2"])
    assert not request.in_process


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "0"], "-n expects a positive number of processes, got '0'"),
        (["-n", "two"], "-n expects a positive number of processes, got 'two'"),
        (["--hostfile"], "--hostfile expects a value"),
        (
            ["-n", "2", "--hostfile", "h.json"],
            "-n and --hostfile cannot be combined; the hostfile lists every rank",
        ),
    ],
)
def test_split_rejects_bad_options(argv, message):
    with pytest.raises(LaunchError) as raised:
        split_launch_arguments(argv)
    assert str(raised.value) == message


def test_command_for_local_ranks():
    command = build_launch_command(
        ["python", "train.py", "--backend", "ring"],
        LaunchRequest(num_processes=2),
        "ring",
        {"OMP_NUM_THREADS": "1"},
        starting_port=40000,
    )
    assert Path(command[0]).name == "mlx.launch"
    assert command[1:] == [
        "-n",
        "2",
        "--backend",
        "ring",
        "--starting-port",
        "40000",
        "--env",
        "OMP_NUM_THREADS=1",
        "--",
        "python",
        "train.py",
        "--backend",
        "ring",
    ]


def test_command_with_hostfile_takes_its_backend(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps({"backend": "mpi", "hosts": [{"ssh": "a"}]}))
    command = build_launch_command(
        ["python", "train.py"], LaunchRequest(hostfile=hostfile), "any", {}
    )
    assert command[1:5] == ["--hostfile", str(hostfile), "--backend", "mpi"]


def test_command_rejects_invalid_hostfile(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([{"ssh": "a"}, {"ssh": ""}]))
    with pytest.raises(HostfileError, match=r"hosts\[1\]: 'ssh' must be"):
        build_launch_command(["x"], LaunchRequest(hostfile=hostfile), "ring", {})


def test_command_rejects_unknown_backend():
    with pytest.raises(LaunchError, match="unknown distributed backend 'tcp'"):
        build_launch_command(["x"], LaunchRequest(num_processes=2), "tcp", {})


def probe_command(out, *options):
    return [sys.executable, str(PROBE), "--out", str(out), *options]


def read_reports(out):
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_launch_runs_every_rank_in_one_group(tmp_path):
    outcome = launch_ranks(
        probe_command(tmp_path, "--backend", "ring"),
        LaunchRequest(num_processes=2),
        "ring",
    )
    reports = read_reports(tmp_path)
    assert outcome.exit_code == 0
    assert outcome.failures == []
    assert [r["rank"] for r in reports] == [0, 1]
    assert [r["sum"] for r in reports] == [2.0, 2.0]
    assert reports[1]["extra"] == ["--backend", "ring"]


def test_launch_gives_ranks_blas_settings(tmp_path):
    launch_ranks(probe_command(tmp_path), LaunchRequest(num_processes=2), "ring")
    threads = max(1, (os.cpu_count() or 1) // 2)
    expected = rank_environment(threads)
    for report in read_reports(tmp_path):
        assert report["blas"] == expected["MLX_DISTRIBUTED_BLAS"]
        assert report["blas_threads"] == str(threads)


def test_launch_reports_failed_rank_and_code(tmp_path):
    outcome = launch_ranks(
        probe_command(tmp_path, "--exit-rank", "1", "--exit-code", "5"),
        LaunchRequest(num_processes=2),
        "ring",
    )
    assert outcome.exit_code == 5
    assert outcome.failures[0] == RankFailure(rank=1, exit_code=5)


def test_launch_reports_killed_rank(tmp_path):
    outcome = launch_ranks(
        probe_command(tmp_path, "--kill-rank", "0"),
        LaunchRequest(num_processes=2),
        "ring",
    )
    assert outcome.exit_code == 137
    assert outcome.failures[0] == RankFailure(rank=0, exit_code=-9)


def test_launch_passes_environment_to_ranks(tmp_path):
    command = build_launch_command(
        probe_command(tmp_path),
        LaunchRequest(num_processes=2),
        "ring",
        {"PROBE_VALUE": "blas settings"},
        starting_port=find_free_port_range(2),
    )
    assert run_launch(command).exit_code == 0
    assert [r["probe_value"] for r in read_reports(tmp_path)] == ["blas settings"] * 2


def test_launcher_priority_lowered_not_ranks(tmp_path):
    outcome = launch_ranks(
        probe_command(tmp_path, "--wait-launcher-priority"),
        LaunchRequest(num_processes=2),
        "ring",
    )
    assert outcome.exit_code == 0
    own = os.getpriority(os.PRIO_PROCESS, 0)
    for report in read_reports(tmp_path):
        assert report["launcher_priority"] == 19
        assert report["own_priority"] == own


def test_one_host_hostfile_runs_one_rank_alone(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([{"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}]))
    outcome = launch_ranks(
        probe_command(tmp_path), LaunchRequest(hostfile=hostfile), "ring"
    )
    assert outcome.exit_code == 0
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert (report["rank"], report["size"], report["sum"]) == (0, 1, 1.0)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states")
def test_stopped_rank_killed_after_another_fails(tmp_path):
    # Rank 1 stops itself with SIGSTOP and cannot act on mlx.launch's SIGTERM
    # once rank 0 has failed; without the kill, the launch would never end.
    command = build_launch_command(
        probe_command(tmp_path, "--stop-rank", "1", "--exit-code", "3"),
        LaunchRequest(num_processes=2),
        "ring",
        {},
        starting_port=find_free_port_range(2),
    )
    outcome = run_launch(command, rank_count=2, stop_grace_s=1.0)
    assert outcome.exit_code == 3
    assert RankFailure(rank=0, exit_code=3) in outcome.failures
    assert RankFailure(rank=1, exit_code=-9) in outcome.failures


def test_rank_text_like_failure_ignored(tmp_path):
    outcome = launch_ranks(
        probe_command(tmp_path, "--say", "Node with rank 1 exited with code 3"),
        LaunchRequest(num_processes=2),
        "ring",
    )
    assert outcome.exit_code == 0
    assert outcome.failures == []
