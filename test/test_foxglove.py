"""Foxglove: the session's layout, and the live view of ``mile-ros sim --foxglove`` seen by a real client.

The client speaks the Foxglove WebSocket protocol itself over the ``websockets`` package (the SDK
server's subprotocol, JSON ``serverInfo``/``advertise``/``subscribe``, binary ``messageData``
frames), so the test sees exactly what the Foxglove app would.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections import defaultdict

import pytest
import yaml

from mile_ros.cli.sim import default_config
from mile_ros.graph.bag_dataset import find_bags
from mile_ros.graph.bag_episode import decode, read_bag
from mile_ros.graph.foxglove_bridge import (
    LIVE_TOPICS,
    channel_specs,
    check_live_view,
    layout_paths,
    load_layout,
    parse_port,
    path_topic,
    resolve_path,
    session_layout,
)
from mile_ros.graph.topics import ACTION_NAMES, TOPICS, bag_topic, topic_info
from mile_ros.nodes.probe import unique_domain_id

KNOWN = {bag_topic(t) for t in TOPICS}  # root names, as the channels and the layout carry them
SUBPROTOCOL = "foxglove.sdk.v1"  # what foxglove-sdk's server speaks (foxglove.websocket.v1 before it)
MESSAGE_DATA = 0x01  # binary opcode: u8 op, u32 subscription id, u64 log time, payload


def test_layout_is_the_sdks_own_and_names_real_topics():
    """The committed layout is what foxglove.layouts builds, and every path reads a real topic."""
    layout, built = load_layout(), json.loads(session_layout())
    # Panels and paths, not the bytes: a later SDK may spell the same layout with more fields.
    stale = "config/foxglove_session.json is stale: python -m mile_ros.graph.foxglove_bridge"
    assert list(layout_paths(layout)) == list(layout_paths(built)), stale
    assert layout["content"]["items"][0]["proportion"] == built["content"]["items"][0]["proportion"], stale
    assert layout["version"] == 1 and layout["content"]["type"] == "split"
    paths = list(layout_paths(layout))
    assert len(paths) >= 15
    for panel, path in paths:
        assert path_topic(path) in KNOWN, f"{panel}: {path} reads no topic of mile_ros.graph.topics"
    read = {path_topic(p) for _, p in paths}
    for needed in (
        "/camera/image_raw",
        "/mile/proposed_action",
        "/mile/executed_action",
        "/mile/intervention",
        "/mile/intervention_probability",
        "/robot/success",
        "/episode/end",
    ):
        assert needed in read, needed
    assert read <= set(LIVE_TOPICS), "the live view carries every topic the layout reads"


def test_channels_carry_the_bags_schemas_and_bad_ports_are_refused():
    specs = {s.topic: s for s in channel_specs()}
    assert set(specs) == set(LIVE_TOPICS) and "/clock" not in specs
    joint = specs["/mile/proposed_action"]
    assert (joint.schema_name, joint.schema_encoding, joint.message_encoding) == (
        "sensor_msgs/msg/JointState",
        "ros2msg",
        "cdr",
    )
    assert joint.schema.startswith(b"std_msgs/Header header\n") and b"MSG: builtin_interfaces/Time" in joint.schema
    with pytest.raises(ValueError, match="unknown topic"):
        channel_specs(["/no/such/topic"])
    for bad in ("0", "70000", "http"):
        with pytest.raises(ValueError):
            parse_port(bad)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ValueError, match="in use"):
            check_live_view(taken.getsockname()[1])
    with pytest.raises(ValueError, match="--secure"):
        check_live_view(8765, secured=True)


def test_sim_refuses_a_taken_port_before_writing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "mile_ros.cli.main", "sim", "--out", str(tmp_path / "run")]
        done = subprocess.run([*cmd, "--foxglove", str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"127.0.0.1:{port} is in use" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()
    bad = subprocess.run([*cmd, "--foxglove", "99999"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "outside 1-65535" in bad.stderr, bad.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def watch(
    port: int, want: set[str], deadline: float, proc: subprocess.Popen
) -> tuple[dict, dict, dict[str, list[bytes]]]:
    """Connect (retrying while the session starts), subscribe to ``want``, collect messages until each
    has some (or the server goes away). Returns (serverInfo, channels by topic, payloads by topic)."""
    import websockets

    while True:
        try:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL], max_size=None)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:  # never up, or the session ended
                return {}, {}, {}
            await asyncio.sleep(0.5)
    info, channels, received = {}, {}, defaultdict(list)
    subscribed: dict[int, str] = {}
    async with ws:
        assert ws.subprotocol == SUBPROTOCOL
        while time.monotonic() < deadline and not all(received.get(t) for t in want):
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            except (TimeoutError, websockets.ConnectionClosed):
                break
            if isinstance(frame, bytes):
                op, sub_id, _log_time = struct.unpack_from("<BIQ", frame)
                assert op == MESSAGE_DATA
                received[subscribed[sub_id]].append(frame[13:])
                continue
            msg = json.loads(frame)
            if msg["op"] == "serverInfo":
                info = msg
            elif msg["op"] == "advertise":
                new = []
                for ch in msg["channels"]:
                    channels[ch["topic"]] = ch
                    if ch["topic"] in want and ch["topic"] not in subscribed.values():
                        sub_id = len(subscribed) + 1
                        subscribed[sub_id] = ch["topic"]
                        new.append({"id": sub_id, "channelId": ch["id"]})
                if new:
                    await ws.send(json.dumps({"op": "subscribe", "subscriptions": new}))
    return info, channels, received


@pytest.mark.slow
def test_live_view_streams_a_running_session_and_the_layout_reads_its_bags(tmp_path, init):
    """A short rendered session with ``--foxglove``: a client gets every topic advertised under the bags'
    schemas and real messages from the graph; then every path of the layout resolves on the session's
    recorded bags (and on the live messages for the topics bags do not keep)."""
    config = yaml.safe_load(default_config().read_text())
    config["simulated_human"]["ros__parameters"]["target_intervention_rate"] = 0.9  # takeovers in short episodes
    config["metaworld_bridge"]["ros__parameters"]["image_size"] = 64
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(config))
    port, run = free_port(), tmp_path / "run"
    cmd = [sys.executable, "-m", "mile_ros.cli.main", "sim", "--task", "drawer-open-v3", "--iterations", "1"]
    cmd += ["--episodes", "1", "--eval-episodes", "1", "--max-episode-steps", "40", "--epochs", "5"]
    cmd += ["--mental-rollouts", "2", "--render", "--init-policy", str(init), "--out", str(run)]
    cmd += ["--config", str(tmp_path / "sim.yaml"), "--domain-id", str(unique_domain_id()), "--foxglove", str(port)]
    want = {
        "/camera/image_raw",
        "/mile/proposed_action",
        "/mile/executed_action",
        "/mile/intervention",
        "/mile/intervention_probability",  # only once the update's mental model acts: the last evaluation
        "/episode/end",
        "/session/progress",
    }
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        info, channels, live = asyncio.run(watch(port, want, time.monotonic() + 400, proc))
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-4000:]
    assert f"Foxglove live view on ws://127.0.0.1:{port}" in out
    assert info["name"] == "mile_ros"
    assert set(channels) == set(LIVE_TOPICS)
    specs = {s.topic: s for s in channel_specs()}
    for topic, ch in channels.items():
        assert (ch["encoding"], ch["schemaEncoding"], ch["schemaName"]) == ("cdr", "ros2msg", topic_info(topic).type)
        assert ch["schema"] == specs[topic].schema.decode()
    missing = [t for t in want if not live.get(t)]
    assert not missing, f"no live message on {missing}"
    decoded = {t: [decode(p, topic_info(t).type) for p in payloads] for t, payloads in live.items()}
    assert all(list(m.name) == list(ACTION_NAMES) for m in decoded["/mile/proposed_action"])
    probs = [m.position[0] for m in decoded["/mile/intervention_probability"]]
    assert all(0.0 <= p <= 1.0 for p in probs) and list(decoded["/mile/intervention_probability"][0].name) == [
        "p_intervene"
    ]
    image = decoded["/camera/image_raw"][0]
    assert (image.width, image.height, image.encoding) == (64, 64, "rgb8") and len(image.data) == 64 * 64 * 3
    assert {m.header.frame_id for m in decoded["/episode/end"]} <= {"success", "time_limit", "terminated"}
    assert "text" in json.loads(decoded["/session/progress"][-1].data)

    # The layout on the recorded bags: every path resolves on its topic's messages.
    recorded = defaultdict(list)
    for bag in find_bags(run / "bags"):
        for m in read_bag(bag).messages:
            recorded[m.topic].append(m.decode())
    assert recorded["/camera/image_raw"] and recorded["/mile/human_action"], sorted(recorded)
    for panel, path in layout_paths(load_layout()):
        topic = path_topic(path)
        messages = recorded.get(topic) or decoded.get(topic)  # /session/progress is live only
        assert messages, f"{panel}: nothing on {topic}"
        for m in messages[:5]:
            value = resolve_path(path, m)
            if "position[" in path and topic != "/episode/end":
                index = int(path.split("[")[1].rstrip("]"))
                series = next(s for s in _series(panel) if s["value"] == path)
                assert series["label"].split()[-1] == m.name[index], (path, list(m.name))
            assert value is not None


def _series(title: str) -> list[dict]:
    def panels(content):
        if content.get("type") == "panel":
            yield content
        for item in content.get("items", []):
            yield from panels(item["content"])

    return [
        s for p in panels(load_layout()["content"]) if p.get("title") == title for s in p["config"].get("paths", [])
    ]
