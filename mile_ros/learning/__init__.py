"""The ROS-free learning core of mile_ros: MILE's intervention model, networks, datasets and trainers.

Nothing here imports rclpy, so it trains and benchmarks from plain Python.
"""

from .bc import BCConfig, fit_bc
from .checkpoint import CheckpointError, MileCheckpoint, load_checkpoint
from .dataset import DatasetError, InterventionDataset, holdout_mask, stack_frames
from .intervention import (
    ContinuousForm,
    ContinuousIntervention,
    DiscreteForm,
    DiscreteIntervention,
    chi2_probit_expectation,
    gaussian_spread,
)
from .loop import (
    LoopConfig,
    LoopResult,
    RolloutSelection,
    TrainingDivergedError,
    TrainingInterruptedError,
    train_loop,
)
from .model import MileLosses, MileModel
from .networks import CategoricalMLP, GaussianMLP, Normalizer, PolicyNet, build_policy
from .prior import PriorTerm, demonstrated_actions, joint_rows
from .runner import FrameStacker, PolicyRunner
from .spec import Spec
from .trainer import MileConfig, MileResult, build_model, calibrate_cost, fit_mile

__all__ = [
    "BCConfig",
    "CategoricalMLP",
    "CheckpointError",
    "ContinuousForm",
    "ContinuousIntervention",
    "DatasetError",
    "DiscreteForm",
    "DiscreteIntervention",
    "FrameStacker",
    "GaussianMLP",
    "InterventionDataset",
    "LoopConfig",
    "LoopResult",
    "MileCheckpoint",
    "MileConfig",
    "MileLosses",
    "MileModel",
    "MileResult",
    "Normalizer",
    "PolicyNet",
    "PolicyRunner",
    "PriorTerm",
    "RolloutSelection",
    "Spec",
    "TrainingDivergedError",
    "TrainingInterruptedError",
    "build_model",
    "build_policy",
    "calibrate_cost",
    "chi2_probit_expectation",
    "demonstrated_actions",
    "fit_bc",
    "fit_mile",
    "gaussian_spread",
    "holdout_mask",
    "joint_rows",
    "load_checkpoint",
    "stack_frames",
    "train_loop",
]
