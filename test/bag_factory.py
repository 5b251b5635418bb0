"""Episode bags for the export and bag-tool tests, written like the recorder writes them.

Each bag is a real rosbag2 (MCAP) written by the project's :class:`EpisodeBagWriter` with rclpy-serialized
messages: per step the observation, the proposal, the predicted ``P(I=1|s)``, the executed command, the
human action when intervening, the intervention flag and (``camera=True``) a rendered rgb8 image, all
stamped with the observation's stamp and written in shuffled order, then the episode's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Bool

from mile_ros.graph.bag_episode import EpisodeBagWriter
from mile_ros.graph.topics import ACTION_NAMES, CAMERA_TOPIC, RECORDED_TOPICS, RENAMED, TOPICS
from mile_ros.nodes.common import to_time, vector_msg

OBS_DIM = 6
PERIOD_NS = 50_000_000  # 20 Hz


@dataclass
class Truth:
    stamps: list
    observation: np.ndarray
    robot: np.ndarray
    executed: np.ndarray
    human: np.ndarray  # NaN where not intervened
    intervention: np.ndarray
    probability: np.ndarray
    images: list


def image_at(i: int, size: int = 16) -> np.ndarray:
    """A distinct picture per step: a gradient shifted by the step, so frames can be told apart."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([(x * 16 + i) % 256, (y * 16 + 2 * i) % 256, np.full_like(x, (7 * i) % 256)], -1).astype(np.uint8)


def write_session_episode(
    path,
    steps: int,
    human_steps=(),
    seed: int = 0,
    camera: bool = False,
    success: bool = True,
    end_reason: str = "success",
    mode: str = "train",
    task: str = "drawer-open-v3",
    close: bool = True,
    end: bool = True,
    episode: int = 0,
    iteration: int = 0,
    namespace: str = "",
    legacy: bool = False,
) -> Truth:
    """One episode's bag; its topics under ``namespace`` (``/arm1``), or (``legacy``) under the absolute
    names recorders wrote before names were relative and renamed (``/sim/episode_end``)."""
    rng = np.random.default_rng(seed)
    records = []
    obs_all, rob_all, ex_all, hum_all, flag_all, p_all, imgs, stamps = [], [], [], [], [], [], [], []
    for i in range(steps + 1):  # +1: the final observation, answered but never executed
        stamp = 10**9 + i * PERIOD_NS
        obs, robot, human = rng.normal(size=OBS_DIM), rng.uniform(-1, 1, 4), rng.uniform(-1, 1, 4)
        p = float(rng.uniform())
        intervened = i in human_steps
        executed = human if intervened else robot
        records.append(("/mile/observation", vector_msg(stamp, [f"obs_{k:02d}" for k in range(OBS_DIM)], obs)))
        records.append(("/mile/proposed_action", vector_msg(stamp, ACTION_NAMES, robot)))
        records.append(("/mile/intervention_probability", vector_msg(stamp, ["p_intervene"], [p])))
        records.append(
            ("/mile/executed_action", vector_msg(stamp, ACTION_NAMES, executed, "human" if intervened else "robot"))
        )
        if intervened:
            records.append(("/mile/human_action", vector_msg(stamp, ACTION_NAMES, human, "human")))
        records.append(("/mile/intervention", Bool(data=intervened)))
        if camera:
            img = image_at(i)
            msg = Image(height=img.shape[0], width=img.shape[1], encoding="rgb8", step=img.shape[1] * 3)
            msg.header.stamp, msg.header.frame_id = to_time(stamp), "camera"
            msg.data = img.tobytes()
            records.append((CAMERA_TOPIC, msg))
        if i < steps:
            stamps.append(stamp)
            obs_all.append(obs)
            rob_all.append(robot)
            ex_all.append(executed)
            hum_all.append(human if intervened else np.full(4, np.nan))
            flag_all.append(intervened)
            p_all.append(p)
            imgs.append(image_at(i))
    if end:
        final = 10**9 + steps * PERIOD_NS
        names = ["steps", "success", "return", "duration_s"]
        records.append(
            ("/episode/end", vector_msg(final, names, [steps, float(success), 0, steps * 0.05], end_reason))
        )
    earlier = {new: old for old, new in RENAMED.items()} if legacy else {}
    recorded = [*RECORDED_TOPICS, *([CAMERA_TOPIC] if camera else [])]
    topics = {f"{namespace.rstrip('/')}/{earlier.get(t, t)}": TOPICS[t].type for t in recorded}
    writer = EpisodeBagWriter(path, topics)
    for log_time, k in enumerate(rng.permutation(len(records))):
        topic, msg = records[k]
        writer.write(topic, serialize_message(msg), 10**9 + log_time)
    if close:
        writer.close(
            {
                "task": task,
                "mode": mode,
                "iteration": iteration,
                "episode": episode,
                "steps": steps,
                "interventions": len([s for s in human_steps if s < steps]),
                "success": success,
                "end_reason": end_reason,
                "discarded": end_reason == "discard",
            }
        )
    return Truth(
        stamps,
        np.array(obs_all),
        np.array(rob_all),
        np.array(ex_all),
        np.array(hum_all),
        np.array(flag_all),
        np.array(p_all),
        imgs,
    )
