"""Simulation for MILE without ROS: environments, scripted experts, the simulated human, rollouts.

Metaworld v3 tasks (continuous, 39-d state, 4-d actions) and Gymnasium's LunarLander-v3 (discrete).
Nothing here imports rclpy; the ROS nodes and the benchmark build on this API.
"""

from .envs import SimEnv, StepResult, make_env, valid_tasks
from .experts import Expert, make_expert
from .human import MentalModelFit, SimulatedHuman, fit_mental_model, make_simulated_human
from .initial_policy import make_initial_policy
from .presets import load_preset
from .rollout import Episode, EvalResult, episodes_to_dataset, evaluate, run_episode

__all__ = [
    "Episode",
    "EvalResult",
    "Expert",
    "MentalModelFit",
    "SimEnv",
    "SimulatedHuman",
    "StepResult",
    "episodes_to_dataset",
    "evaluate",
    "fit_mental_model",
    "load_preset",
    "make_env",
    "make_expert",
    "make_initial_policy",
    "make_simulated_human",
    "run_episode",
    "valid_tasks",
]
