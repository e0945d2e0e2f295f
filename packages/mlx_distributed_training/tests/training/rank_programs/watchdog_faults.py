"""Rank program: a training-like loop of collectives under the watchdog.

``--fault`` chooses what ``--fault-rank`` does at ``--fault-step`` instead of
entering that step's collective: ``kill`` (SIGKILL itself), ``hang`` (sleep
for an hour), ``raise`` (raise ValueError), ``slow`` (work locally for
``--slow-s`` seconds, less than the timeout) or ``none``. ``sleep-before-init``
and ``sleep-before-watchdog`` make ``--fault-rank`` sleep ``--slow-s`` seconds
before it connects the group or starts the watchdog. Rank 1 also finishes
``--late-finish-s`` seconds after rank 0. Each rank prints ``finished`` when
its loop ends normally (on stderr, through logging).
"""

import argparse
import logging
import os
import signal
import time

import mlx.core as mx
from mlx_distributed_training.training.distributed.group import init_group
from mlx_distributed_training.training.distributed.watchdog import Watchdog

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fault", default="none")
parser.add_argument("--fault-rank", type=int, default=1)
parser.add_argument("--fault-step", type=int, default=3)
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--timeout-s", type=float, default=3.0)
parser.add_argument("--slow-s", type=float, default=1.5)
parser.add_argument("--late-finish-s", type=float, default=0.0)
args = parser.parse_args()

logging.basicConfig(level=logging.INFO, format="%(message)s")
if args.fault == "sleep-before-init" and os.environ["MLX_RANK"] == str(args.fault_rank):
    time.sleep(args.slow_s)
group = init_group("ring", timeout_s=args.timeout_s)
rank = group.rank()
if args.fault == "sleep-before-watchdog" and rank == args.fault_rank:
    time.sleep(args.slow_s)

with Watchdog(group, timeout_s=args.timeout_s) as watchdog:
    for step in range(args.steps):
        if rank == args.fault_rank and step == args.fault_step:
            if args.fault == "kill":
                # A real crash comes during a step's work, after the heartbeat
                # thread has reported the last collective. Without this pause
                # the kill can beat that report, and the survivor then names
                # no collective at all.
                time.sleep(0.2)
                os.kill(os.getpid(), signal.SIGKILL)
            elif args.fault == "hang":
                time.sleep(3600)
            elif args.fault == "raise":
                raise ValueError(f"bad batch at step {step}")
            elif args.fault == "slow":
                time.sleep(args.slow_s)
        with watchdog.collective(f"step {step}"):
            total = mx.distributed.all_sum(mx.array([float(rank)]), group=group)
            mx.eval(total)
    if rank == 1:
        time.sleep(args.late_finish_s)
logging.info("finished")
