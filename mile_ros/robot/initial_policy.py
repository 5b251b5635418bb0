"""A first policy for a real-robot session: it proposes no motion, so iteration 0 is the human's.

The simulation tasks get a behaviour-cloned starting policy from ``mile-ros init-policy``; a real task
has no scripted expert, so its session starts from a policy whose mean action is zero (the arm stays
still and the gripper keeps its state) with the real robot's observation: the 2048-d R3M embedding and
the end-effector position (2051 values per frame), 3 previous frames stacked, actions in [-1, 1].

    python -m mile_ros.robot.initial_policy --out runs/widowx/initial.pt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from mile_ros.learning import MileCheckpoint, Spec, build_policy

from .r3m import R3M_DIM

__all__ = ["ACTION_DIM", "OBS_DIM", "still_policy_checkpoint"]

OBS_DIM = R3M_DIM + 3  # embedding, then the end-effector position (the policy node's order)
ACTION_DIM = 4


def real_robot_spec(frame_stack: int = 3) -> Spec:
    return Spec(obs_dim=OBS_DIM, act_dim=ACTION_DIM, frame_stack=frame_stack, action_low=(-1.0,) * ACTION_DIM,
                action_high=(1.0,) * ACTION_DIM, obs_source="r3m+ee")


def still_policy_checkpoint(hidden: Sequence[int] = (256, 256), frame_stack: int = 3, seed: int = 0,
                            initial_std: float = 0.3) -> MileCheckpoint:
    """A Gaussian policy with mean 0 everywhere and a constant spread ``initial_std``."""
    torch.manual_seed(seed)
    spec = real_robot_spec(frame_stack)
    policy = build_policy(spec.stacked_dim, ACTION_DIM, False, tuple(hidden))
    with torch.no_grad():  # zero output weights: the mean and spread no longer depend on the input
        policy.mean_head.weight.zero_()
        policy.mean_head.bias.zero_()
        policy.log_std_head.weight.zero_()
        policy.log_std_head.bias.fill_(float(torch.log(torch.tensor(initial_std))))
    return MileCheckpoint(spec, policy, meta={"kind": "still", "note": "zero-motion start for a real robot"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mile_ros.robot.initial_policy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="checkpoint file to write")
    parser.add_argument("--hidden", default="256,256", help="hidden layer sizes (default 256,256)")
    parser.add_argument("--frame-stack", type=int, default=3, help="previous frames stacked (default 3)")
    args = parser.parse_args(argv)
    hidden = tuple(int(v) for v in args.hidden.split(","))
    path = still_policy_checkpoint(hidden, args.frame_stack).save(args.out)
    print(f"wrote {path}: zero-motion policy, observation r3m+ee ({OBS_DIM} per frame, {args.frame_stack} "
          f"previous frames), hidden {hidden}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
