"""DDS security: the keystore ``mile-ros security create`` makes, and what ``--secure`` does with it.

The keystore is checked with OpenSSL, the library the builtin plugins verify with: every enclave's
certificate chains to the keystore's CA, the governance and permissions documents carry valid S/MIME
signatures of that CA (another CA's or a tampered document does not verify), and the permissions
grant teleop, commands, checkpoints and the trainer's, recorder's and robot's services only to the
enclaves that should have them. Then a node is really started with security enforced: where the RMW
has the security plugins, a secured talker reaches a secured listener over DDS while a process without
the keys, or with another CA's, can neither publish a takeover to it nor see the topics; where it has
none (the PyPI build of Fast DDS), ``mile-ros sim --secure`` must refuse with rcl's reason and start
nothing.
"""

from __future__ import annotations

import fnmatch
import re
import stat
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mile_ros.graph.security import (
    ARM,
    INTERBOTIX,
    NO_PLUGINS,
    NODE_POLICIES,
    OPERATOR,
    SecurityUnavailableError,
    create_keystore,
    default_enclaves,
    enclave_dir,
    enclave_name,
    probe_secure_node,
    security_env,
    verify_smime,
)
from mile_ros.graph.topics import SERVICES, TOPICS

pytest.importorskip("cryptography")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keystore(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keystore") / "ks"
    create_keystore(path)
    return path


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def unix(text: bytes) -> str:
    return text.decode().replace("\r\n", "\n")  # S/MIME text mode signs CRLF line ends


def test_keystore_layout_chain_and_signatures(keystore):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = keystore / "public" / "ca.cert.pem"
    assert (keystore / "private" / "ca.key.pem").is_file()
    assert stat.S_IMODE((keystore / "private").stat().st_mode) == 0o700
    assert stat.S_IMODE((keystore / "private" / "ca.key.pem").stat().st_mode) == 0o600
    assert unix(verify_smime(keystore / "public" / "governance.p7s", ca)) == (
        keystore / "public" / "governance.xml"
    ).read_text()
    for name in default_enclaves():
        folder = enclave_dir(keystore, name)
        assert folder == keystore / "enclaves" / "mile_ros" / name
        files = {p.name for p in folder.iterdir()}
        assert files == {
            "cert.pem",
            "key.pem",
            "identity_ca.cert.pem",
            "permissions_ca.cert.pem",
            "governance.p7s",
            "permissions.xml",
            "permissions.p7s",
        }
        assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600
        for ca_copy in ("identity_ca.cert.pem", "permissions_ca.cert.pem"):
            assert (folder / ca_copy).read_bytes() == ca.read_bytes()
        res = openssl("verify", "-CAfile", str(ca), str(folder / "cert.pem"))
        assert res.returncode == 0 and ": OK" in res.stdout, res.stdout + res.stderr
        cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        key = serialization.load_pem_private_key((folder / "key.pem").read_bytes(), password=None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        assert key.public_key().public_bytes(serialization.Encoding.PEM, spki) == cert.public_key().public_bytes(
            serialization.Encoding.PEM, spki
        )
        assert cert.subject.rfc4514_string() == f"CN={enclave_name(name)}"
        signed = unix(verify_smime(folder / "permissions.p7s", ca))
        assert signed == (folder / "permissions.xml").read_text()
        grant = ET.fromstring(signed).find("permissions/grant")
        assert grant.findtext("subject_name") == f"CN={enclave_name(name)}"  # the grant is the certificate's
        assert grant.findtext("default") == "DENY"
        assert unix(verify_smime(folder / "governance.p7s", ca)) == (keystore / "public" / "governance.xml").read_text()


def test_governance_locks_the_domain(keystore):
    rule = ET.parse(keystore / "public" / "governance.xml").getroot().find("domain_access_rules/domain_rule")
    assert rule.findtext("allow_unauthenticated_participants") == "false"
    assert rule.findtext("enable_join_access_control") == "true"
    assert rule.findtext("discovery_protection_kind") == "ENCRYPT"
    assert rule.findtext("liveliness_protection_kind") == "ENCRYPT"
    assert rule.findtext("rtps_protection_kind") in ("SIGN", "ENCRYPT")
    topic_rules = rule.findall("topic_access_rules/topic_rule")
    assert [t.findtext("topic_expression") for t in topic_rules] == ["*"]
    for field in ("enable_discovery_protection", "enable_read_access_control", "enable_write_access_control"):
        assert topic_rules[0].findtext(field) == "true"
    assert topic_rules[0].findtext("data_protection_kind") == "ENCRYPT"
    assert topic_rules[0].findtext("metadata_protection_kind") == "ENCRYPT"


def test_another_ca_and_a_tampered_document_do_not_verify(keystore, tmp_path):
    other = tmp_path / "other"
    create_keystore(other, ["simulated_human"])
    ca = keystore / "public" / "ca.cert.pem"
    foreign = enclave_dir(other, "simulated_human")
    res = openssl("verify", "-CAfile", str(ca), str(foreign / "cert.pem"))
    assert res.returncode != 0, "another keystore's certificate chains to this CA"
    with pytest.raises(ValueError):
        verify_smime(foreign / "permissions.p7s", ca)
    # One word of a signed grant changed: DENY -> ALLOW for everything else.
    tampered = tmp_path / "tampered.p7s"
    text = (enclave_dir(keystore, "simulated_human") / "permissions.p7s").read_text()
    assert "<default>DENY</default>" in text
    tampered.write_text(text.replace("<default>DENY</default>", "<default>ALLOW</default>"))
    with pytest.raises(ValueError):
        verify_smime(tampered, ca)


def grants(keystore: Path) -> dict[str, dict[str, list[str]]]:
    """enclave -> {"publish": [...], "subscribe": [...]} as signed (DDS names, fnmatch patterns)."""
    out = {}
    ca = keystore / "public" / "ca.cert.pem"
    for name in default_enclaves():
        root = ET.fromstring(unix(verify_smime(enclave_dir(keystore, name) / "permissions.p7s", ca)))
        rule = root.find("permissions/grant/allow_rule")
        out[name] = {k: [t.text for t in rule.findall(f"{k}/topics/topic")] for k in ("publish", "subscribe")}
    return out


def allowed(g: dict[str, dict[str, list[str]]], kind: str, dds_topic: str) -> set[str]:
    return {name for name, rules in g.items() if any(fnmatch.fnmatchcase(dds_topic, p) for p in rules[kind])}


def test_only_the_session_enclaves_may_command(keystore):
    g = grants(keystore)
    assert allowed(g, "publish", "rt/teleop/joy") == {"simulated_human", "ps3_teleop"}
    assert allowed(g, "publish", "rt/mile/executed_action") == {"arbitration_node"}
    assert allowed(g, "publish", "rt/mile/checkpoint") == {"trainer_node", "session_manager"}
    assert allowed(g, "publish", "rt/mile/proposed_action") == {"policy_node"}
    assert allowed(g, "publish", "rq/trainer/trainRequest") == {"session_manager"}
    # The recorder's lifecycle (configure names the bag, activate records): the session manager only.
    assert allowed(g, "publish", "rq/recorder_node/change_stateRequest") == {"session_manager"}
    assert allowed(g, "subscribe", "rq/recorder_node/change_stateRequest") == {"recorder_node"}
    # The recorder's bag_path: only the session manager may set the recorder's parameters.
    assert allowed(g, "publish", "rq/recorder_node/set_parametersRequest") == {"session_manager"}
    assert allowed(g, "subscribe", "rq/recorder_node/set_parametersRequest") == {"recorder_node"}
    assert allowed(g, "publish", "rq/robot/torqueRequest") == {OPERATOR}
    assert allowed(g, "subscribe", "rq/robot/torqueRequest") == {"widowx_driver"}
    # The arm's driver takes joint commands from widowx_driver (interbotix's module in its process) only.
    assert allowed(g, "publish", "rt/wx250s/commands/joint_group") == {"widowx_driver", INTERBOTIX}
    assert allowed(g, "subscribe", "rq/wx250s/torque_enableRequest") == {INTERBOTIX}
    assert allowed(g, "publish", "rq/robot/estopRequest") == {OPERATOR}
    # Commands reach the robot from arbitration only; the operator reads but publishes no data topic.
    assert {t for t in g[OPERATOR]["publish"] if t.startswith("rt/")} == {"rt/rosout", "rt/parameter_events"}
    assert allowed(g, "publish", "rt/some/other_topic") == set()
    for name, rules in g.items():
        wild = [t for t in rules["publish"] if any(c in t for c in "*?[")]
        # The patterns: the ros2 command's nodes answering their own parameter services, the arm's namespace.
        arm = ("rt/wx250s/*", "rq/wx250s/*", "rr/wx250s/*")
        ok = ("rr/_ros2cli_*/",) if name == OPERATOR else arm if name in ("widowx_driver", INTERBOTIX) else ()
        assert all(t.startswith(ok) for t in wild) if ok else not wild, f"{name} may publish {wild}"


def node_source(node: str) -> str:
    return (ROOT / "mile_ros" / "nodes" / f"{node}.py").read_text()


# and the topics and services of the real-robot nodes that topics.py does not list
ROBOT_ONLY = {"/camera/status", "/robot/home", "/robot/estop", "/robot/clear_estop", "/robot/torque"}
# The policies are in root names (/mile/observation); the code names them relative (mile/observation).
KNOWN = {"/" + n.lstrip("/") for n in (*TOPICS, *SERVICES)} | ROBOT_ONLY


def rooted(names: list[str]) -> set[str]:
    return {n if n.startswith("/") else "/" + n for n in names}


@pytest.mark.slow
@pytest.mark.parametrize("node", [n for n in NODE_POLICIES if n not in (OPERATOR, INTERBOTIX)])
def test_policy_matches_the_node_code(node):
    """What each node's code names (topics, services) is in its enclave's policy, on the right side."""
    policy = NODE_POLICIES[node]
    src = node_source(node)
    named = {m for m in rooted(re.findall(r'"(/?[a-z_]+(?:/[a-z_]+)?)"', src)) if m in KNOWN}
    granted = {*policy.publish, *policy.subscribe, *policy.serves, *policy.calls} - {ARM}
    assert named <= granted, f"{node} names {sorted(named - granted)} which its policy does not grant"
    if "LifecycleNode" in src:  # rclpy.lifecycle's services, served under the node's own name
        assert policy.lifecycle, f"{node} is a lifecycle node: its policy must grant its transitions"
    published = rooted(re.findall(r'publisher\(self, "([^"]+)"\)', src))
    subscribed = rooted(re.findall(r'subscription\(self, "([^"]+)"', src))
    served = rooted(re.findall(r'create_service\(\w+, "([^"]+)"', src))
    assert published <= set(policy.publish) and subscribed <= set(policy.subscribe) and served == set(policy.serves)
    if node != "recorder_node":  # the recorder's topics come from mile_ros.graph.topics
        assert set(policy.publish) - {ARM} <= named, f"{node}'s policy grants topics its code does not publish"


# ---- a node started with security enforced --------------------------------------------------------

NODE_SCRIPT = textwrap.dedent(
    """
    import sys, time, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Joy
    role, name, tag, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rclpy.init(args=sys.argv[5:])
    node = rclpy.create_node(name)
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    got = []
    if role == "listen":
        node.create_subscription(Joy, "/teleop/joy", lambda m: got.append(m.header.frame_id), qos)
    pub = node.create_publisher(Joy, "/teleop/joy", qos) if role == "publish" else None
    # role "spy": no endpoints of its own, so every topic it lists is someone else's
    seen = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pub is not None:
            pub.publish(Joy(header={"frame_id": tag}, buttons=[1] * 12, axes=[1.0] * 8))
        rclpy.spin_once(node, timeout_sec=0.1)
        seen |= {t for t, _ in node.get_topic_names_and_types()}
    print("GOT", sorted(set(got)), flush=True)
    print("SEEN", sorted(seen), flush=True)
    """
)


def start(role: str, name: str, tag: str, seconds: float, env: dict[str, str], enclave: str | None = None):
    """A node ``name`` that listens to or publishes takeovers (Joy, every button held, ``frame_id`` tag)."""
    args = ["--ros-args", "--enclave", enclave] if enclave else []
    return subprocess.Popen(
        [sys.executable, "-c", NODE_SCRIPT, role, name, tag, str(seconds), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def result(proc: subprocess.Popen, timeout: float) -> tuple[set[str], set[str], str]:
    out, _ = proc.communicate(timeout=timeout)
    got = re.search(r"^GOT (.*)$", out, re.M)
    seen = re.search(r"^SEEN (.*)$", out, re.M)
    assert got and seen, out[-2000:]
    return set(eval(got.group(1))), set(eval(seen.group(1))), out


@pytest.mark.slow
def test_secured_dds_keeps_out_a_process_without_the_keys_or_the_session_refuses(keystore, tmp_path):
    """Plugins present: the secured pair talks, an outsider neither publishes a takeover nor sees the
    topics. Plugins absent: ``mile-ros sim --secure`` refuses with rcl's reason and writes nothing."""
    from mile_ros.nodes.probe import ros_env, unique_domain_id

    domain = unique_domain_id()
    base = ros_env(domain)
    base.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    try:
        probe_secure_node(keystore, "arbitration_node", base)
    except SecurityUnavailableError as exc:
        assert NO_PLUGINS in str(exc), str(exc)  # anything else is a broken keystore, not a missing plugin
        out = tmp_path / "run"
        cli = [sys.executable, "-c", "import sys; from mile_ros.cli.main import main; sys.exit(main())"]
        args = ["sim", "--secure", str(keystore), "--out", str(out), "--iterations", "1", "--domain-id", str(domain)]
        res = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120, check=False, env=base)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "--secure: this ROS 2 installation's Fast DDS has no DDS security plugins" in res.stderr
        assert "Not starting the session without DDS security" in res.stderr
        assert not out.exists()  # refused before anything was written or started
        return

    secured = {**base, **security_env(keystore)}
    other = tmp_path / "other"
    create_keystore(other, ["simulated_human"])
    listener = start("listen", "arbitration_node", "-", 25, secured, "/mile_ros/arbitration_node")
    talker = start("publish", "simulated_human", "session", 20, secured, "/mile_ros/simulated_human")
    time.sleep(5)  # the secured pair has authenticated and matched by now
    spy = start("spy", "spy", "-", 8, base)  # no keys at all: plain DDS on the same domain
    eavesdropper = start("listen", "eavesdropper", "-", 8, base)
    intruder = start("publish", "intruder", "intruder", 8, base)
    # Another CA's keystore, with an enclave of the same name: not authenticated by the session's CA.
    foreign_env = {**base, **security_env(other)}
    foreign = start("publish", "simulated_human", "foreign", 8, foreign_env, "/mile_ros/simulated_human")
    got, _, out = result(listener, 60)
    _, talker_seen, _ = result(talker, 60)
    assert "session" in got, f"the secured talker did not reach the secured listener:\n{out[-2000:]}"
    assert "intruder" not in got, "a process without keys published a takeover to the secured listener"
    assert "/teleop/joy" in talker_seen
    _, spy_seen, _ = result(spy, 60)
    assert not {t for t in spy_seen if t.startswith(("/teleop", "/mile"))}, f"a process without keys saw {spy_seen}"
    eavesdropped, _, _ = result(eavesdropper, 60)
    assert eavesdropped == set(), f"a process without keys read the secured teleop: {eavesdropped}"
    _, intruder_seen, _ = result(intruder, 60)
    assert not {t for t in intruder_seen if t.startswith("/mile")}, f"the intruder saw {intruder_seen}"
    _, foreign_seen, _ = result(foreign, 60)
    assert "foreign" not in got, "a participant of another CA published a takeover to the secured listener"
    assert not {t for t in foreign_seen if t.startswith("/mile")}, f"another CA's participant saw {foreign_seen}"
