"""Compile `pipeline.proto` into `mlx_distributed/_proto/`.

Run `uv run python -m mlx_distributed.proto.build` after editing the `.proto`;
a test compiles it again into a temporary folder and fails when the committed
code differs.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

PROTO_SOURCE = Path(__file__).with_name("pipeline.proto")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
GENERATED_DIR = PACKAGE_ROOT / "_proto"
GENERATED_FILES = ("pipeline_pb2.py", "pipeline_pb2_grpc.py")


def compile_proto(out_dir: Path) -> list[Path]:
    """Compile the `.proto` into `out_dir` and return the generated files.

    protoc is run on a copy placed at `mlx_distributed/_proto/pipeline.proto`
    so the generated gRPC module imports its messages by their package path.
    """
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        include_root = Path(tmp) / "include"
        staged = include_root / "mlx_distributed" / "_proto" / "pipeline.proto"
        staged.parent.mkdir(parents=True)
        shutil.copyfile(PROTO_SOURCE, staged)
        build_root = Path(tmp) / "out"
        build_root.mkdir()
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{include_root}",
                f"--python_out={build_root}",
                f"--grpc_python_out={build_root}",
                str(staged),
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {PROTO_SOURCE} (exit {status})")
        written = []
        for name in GENERATED_FILES:
            target = out_dir / name
            shutil.copyfile(build_root / "mlx_distributed" / "_proto" / name, target)
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=GENERATED_DIR,
        help="folder to write the generated modules to (default: %(default)s)",
    )
    args = parser.parse_args()
    for path in compile_proto(args.out):
        print(path)  # noqa: T201 - this is a command-line tool


if __name__ == "__main__":
    main()
