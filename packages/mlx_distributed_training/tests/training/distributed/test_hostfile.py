"""Hostfile validation: every error names the file and the entry."""

import json

import pytest
from mlx_distributed_training.training.distributed.hostfile import (
    HostfileError,
    check_backend_matches,
    load_hostfile,
)


def write(tmp_path, content):
    path = tmp_path / "hosts.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def error_of(path):
    with pytest.raises(HostfileError) as raised:
        load_hostfile(path)
    return str(raised.value)


def test_valid_object_form_loads(tmp_path):
    path = write(
        tmp_path,
        {
            "backend": "ring",
            "envs": ["OMP_NUM_THREADS=1"],
            "hosts": [{"ssh": "a", "ips": ["10.0.0.1"]}, {"ssh": "b", "ips": ["::1"]}],
        },
    )
    hostfile = load_hostfile(path)
    assert [h.ssh for h in hostfile.hosts] == ["a", "b"]
    assert hostfile.backend == "ring"
    assert hostfile.envs == ("OMP_NUM_THREADS=1",)


def test_valid_list_form_loads(tmp_path):
    hostfile = load_hostfile(write(tmp_path, [{"ssh": "a"}]))
    assert hostfile.hosts[0].ips == ()


def test_missing_file_named(tmp_path):
    assert (
        error_of(tmp_path / "nope.json") == f"hostfile {tmp_path}/nope.json not found"
    )


def test_invalid_json_names_line(tmp_path):
    path = write(tmp_path, '[\n  {"ssh": "a"},\n  {"ssh" "b"}\n]')
    assert error_of(path) == (
        f"{path}: invalid JSON at line 3 column 10: Expecting ':' delimiter"
    )


def test_missing_ssh_names_entry(tmp_path):
    path = write(tmp_path, {"hosts": [{"ssh": "a"}, {"ips": ["10.0.0.2"]}]})
    assert error_of(path) == f"{path}: hosts[1]: 'ssh' must be a non-empty host name"


def test_bad_ip_names_entry(tmp_path):
    path = write(tmp_path, [{"ssh": "a", "ips": ["10.0.0.1", "node-b"]}])
    assert error_of(path) == f"{path}: hosts[0]: ips[1] 'node-b' is not an IP address"


def test_unknown_key_names_entry(tmp_path):
    path = write(tmp_path, [{"ssh": "a", "ip": ["10.0.0.1"]}])
    assert error_of(path) == (
        f"{path}: hosts[0]: unknown key 'ip'; expected ssh, ips, rdma"
    )


def test_empty_hosts_rejected(tmp_path):
    path = write(tmp_path, {"hosts": []})
    assert error_of(path) == f"{path}: 'hosts' is empty"


def test_bad_env_names_entry(tmp_path):
    path = write(tmp_path, {"hosts": [{"ssh": "a"}], "envs": ["=x"]})
    assert error_of(path) == f"{path}: envs[0] '=x' is not a NAME=VALUE string"


def test_ring_requires_ips(tmp_path):
    path = write(tmp_path, [{"ssh": "a", "ips": ["10.0.0.1"]}, {"ssh": "b"}])
    with pytest.raises(HostfileError) as raised:
        check_backend_matches(load_hostfile(path), "ring")
    assert str(raised.value) == (
        f"{path}: hosts[1] (b) has no 'ips'; the ring backend needs an IP address "
        "for every host"
    )


def test_conflicting_backend_rejected(tmp_path):
    path = write(tmp_path, {"backend": "mpi", "hosts": [{"ssh": "a"}]})
    with pytest.raises(HostfileError) as raised:
        check_backend_matches(load_hostfile(path), "ring")
    assert str(raised.value) == (
        f"{path}: backend 'mpi' conflicts with the configured backend 'ring'; "
        "remove one of them"
    )


def test_any_takes_hostfile_backend(tmp_path):
    path = write(tmp_path, {"backend": "mpi", "hosts": [{"ssh": "a"}]})
    assert check_backend_matches(load_hostfile(path), "any") == "mpi"
