from mlx_distributed.proto.build import GENERATED_DIR, GENERATED_FILES, compile_proto


def test_generated_code_matches_proto(tmp_path):
    compile_proto(tmp_path)
    for name in GENERATED_FILES:
        fresh = (tmp_path / name).read_text()
        committed = (GENERATED_DIR / name).read_text()
        command = "uv run python -m mlx_distributed.proto.build"
        assert fresh == committed, f"_proto/{name} is stale; run `{command}`"


def test_generated_grpc_module_imports_by_package_path():
    text = (GENERATED_DIR / "pipeline_pb2_grpc.py").read_text()
    assert "from mlx_distributed._proto import pipeline_pb2" in text
