"""Rank program for launcher tests: report what the rank received.

Each rank writes ``rank<R>.json`` in ``--out`` with its rank, the group size,
its arguments, its process id, ``PROBE_VALUE`` and the BLAS variables from
its environment, after one ``all_sum``. Then:

- ``--exit-rank``/``--exit-code`` make one rank exit with that status;
- ``--kill-rank`` makes one rank SIGKILL itself;
- ``--stop-rank`` makes one rank stop itself with SIGSTOP; the others wait
  until it is stopped, then exit with ``--exit-code``;
- ``--say`` writes a line on stderr;
- ``--wait-launcher-priority`` waits up to 10 s for the parent process (the
  launcher) to reach the lowest priority and adds both priorities to the
  report.
"""

import argparse
import json
import os
import signal
import sys
import time

import mlx.core as mx
from mlx_distributed_training.training.distributed.group import init_group

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--exit-rank", type=int, default=-1)
parser.add_argument("--exit-code", type=int, default=0)
parser.add_argument("--kill-rank", type=int, default=-1)
parser.add_argument("--stop-rank", type=int, default=-1)
parser.add_argument("--say", default="", help="a line to write on stderr")
parser.add_argument("--wait-launcher-priority", action="store_true")
args, extra = parser.parse_known_args()

group = init_group(os.environ.get("PROBE_BACKEND", "any"))
total = mx.distributed.all_sum(mx.array([1.0]), group=group)
mx.eval(total)
report = {
    "rank": group.rank(),
    "size": group.size(),
    "sum": total.item(),
    "extra": extra,
    "probe_value": os.environ.get("PROBE_VALUE"),
    "blas": os.environ.get("MLX_DISTRIBUTED_BLAS"),
    "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    "pid": os.getpid(),
}
if args.wait_launcher_priority:
    deadline = time.monotonic() + 10
    launcher = os.getppid()
    while os.getpriority(os.PRIO_PROCESS, launcher) != 19:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    report["launcher_priority"] = os.getpriority(os.PRIO_PROCESS, launcher)
    report["own_priority"] = os.getpriority(os.PRIO_PROCESS, 0)
with open(os.path.join(args.out, f"rank{group.rank()}.json"), "w") as handle:
    json.dump(report, handle)

if args.say:
    sys.stderr.write(args.say + "\n")
    sys.stderr.flush()
if args.stop_rank >= 0:
    if group.rank() == args.stop_rank:
        os.kill(os.getpid(), signal.SIGSTOP)
    # The others wait (up to 10 s) until /proc shows it stopped, then fail.
    stopped_report = os.path.join(args.out, f"rank{args.stop_rank}.json")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(stopped_report) as handle:
                pid = json.load(handle)["pid"]
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "T":
                    break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    sys.exit(args.exit_code)
if group.rank() == args.kill_rank:
    os.kill(os.getpid(), signal.SIGKILL)
if group.rank() == args.exit_rank:
    sys.exit(args.exit_code)
