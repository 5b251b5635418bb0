"""DDS security for the session's graph: an SROS2-layout keystore, made without ``ros2 security``.

Layout (what rcl looks up for ``ROS_SECURITY_KEYSTORE`` and ``--enclave /mile_ros/<node>``)::

    KEYSTORE/public/ca.cert.pem           the CA: identities and permissions (one CA, as SROS2 does)
    KEYSTORE/public/governance.xml, .p7s  the domain's rules, signed by the CA
    KEYSTORE/private/ca.key.pem           the CA's key: never copied off the machine that made it
    KEYSTORE/enclaves/mile_ros/<node>/    cert.pem key.pem identity_ca.cert.pem permissions_ca.cert.pem
                                          governance.p7s permissions.xml permissions.p7s

The documents follow the OMG DDS Security 1.1 schemas (``omg_shared_ca_governance.xsd``,
``omg_shared_ca_permissions.xsd``) with the builtin plugins' conventions: ECDSA P-256 keys, X.509
certificates, S/MIME (detached, text) signatures by the permissions CA. Governance: participants must
authenticate and be granted the domain (join access control), discovery and liveliness encrypted,
every RTPS message signed, every topic's data and metadata encrypted, read and write access checked
per topic. Permissions: each enclave may publish and subscribe only what its node does
(:data:`NODE_POLICIES`), with ``DENY`` otherwise, so only the session's enclaves can publish teleop,
commands and checkpoints, or call the trainer's, recorder's and robot's services and parameters.

ROS-free; needs the ``cryptography`` package.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from mile_ros.graph.foxglove_bridge import LIVE_TOPICS
from mile_ros.graph.topics import CAMERA_TOPIC, RECORDED_TOPICS, bag_topic

__all__ = [
    "ARM",
    "ENCLAVE_PREFIX",
    "INTERBOTIX",
    "LIFECYCLE_SERVICES",
    "NODE_POLICIES",
    "NO_PLUGINS",
    "OPERATOR",
    "Policy",
    "SecurityUnavailableError",
    "create_keystore",
    "default_enclaves",
    "enclave_dir",
    "enclave_name",
    "governance_xml",
    "permissions_xml",
    "probe_secure_node",
    "security_env",
    "sign_smime",
    "verify_smime",
]

ENCLAVE_PREFIX = "/mile_ros"
OPERATOR = "operator"  # a person's shell: `ros2 topic echo`, `ros2 service call /robot/estop`
INTERBOTIX = "interbotix"  # the arm's driver processes (xsarm_control.launch.py)
# The arm's topics and services: interbotix's namespace is the robot model (widowx_driver's robot_model).
ARM = "/wx250s/*"
DOMAINS = (0, 101)  # the domain ids `mile-ros sim` accepts (DDS ports clear of Linux's ephemeral ones)
VALIDITY_DAYS = 3650

# Every rclpy node: its log, its parameter events, rmw_fastrtps's graph cache, and /clock (use_sim_time).
_COMMON_PUB = ("rt/rosout", "rt/parameter_events", "ros_discovery_info")
_COMMON_SUB = ("rt/parameter_events", "ros_discovery_info", "rt/clock")
# The services every rclpy node serves under its own name (parameters, type descriptions).
_NODE_SERVICES = (
    "describe_parameters",
    "get_parameter_types",
    "get_parameters",
    "list_parameters",
    "set_parameters",
    "set_parameters_atomically",
    "get_type_description",
)
_PARAMETER_SERVICES = _NODE_SERVICES[:-1]
# What rclpy.lifecycle adds under a lifecycle node's name: its transitions and their events.
LIFECYCLE_SERVICES = (
    "change_state",
    "get_state",
    "get_available_states",
    "get_available_transitions",
    "get_transition_graph",
)


@dataclass(frozen=True)
class Policy:
    """What one node does on the graph, in ROS names (``/topic``, ``/service``, node names)."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    serves: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    sets_parameters_of: tuple[str, ...] = ()  # nodes whose parameter services it calls
    node: str | None = None  # its ROS node name (default: the enclave's last part)
    lifecycle: bool = False  # an rclpy.lifecycle node: serves LIFECYCLE_SERVICES, publishes transition_event
    extra_publish: tuple[str, ...] = field(default=())  # DDS names as they are (rare)


# The recorder reads what it records (and nothing else).
_RECORDED = tuple(bag_topic(t) for t in (*RECORDED_TOPICS, CAMERA_TOPIC))

# Read from the nodes' code (mile_ros/nodes/*.py; topics and services in docs/interfaces.md).
# test_security.py checks this table against what the nodes create.
NODE_POLICIES: dict[str, Policy] = {
    "metaworld_bridge": Policy(
        publish=("/robot/state", "/robot/ee_pose", "/robot/success", "/camera/image_raw", "/episode/end", "/clock"),
        subscribe=("/mile/executed_action",),
        serves=("/episode/reset",),
        lifecycle=True,
    ),
    "policy_node": Policy(
        publish=(
            "/mile/observation",
            "/mile/proposed_action",
            "/mile/intervention_probability",
            "/mile/active_checkpoint",
        ),
        subscribe=("/robot/state", "/camera/embedding", "/robot/ee_pose", "/mile/checkpoint"),
        serves=("/policy/reset",),
        lifecycle=True,
    ),
    "arbitration_node": Policy(
        publish=("/mile/executed_action", "/mile/human_action", "/mile/intervention", "/mile/help_request"),
        subscribe=("/mile/proposed_action", "/teleop/joy", "/mile/intervention_probability"),
        serves=("/arbitration/reset",),
    ),
    "simulated_human": Policy(
        publish=("/teleop/joy",),
        subscribe=("/mile/observation", "/mile/active_checkpoint", "/mile/help_request"),
        serves=("/simulated_human/reset", "/simulated_human/enable"),
    ),
    "recorder_node": Policy(
        publish=("/recorder/bag_reply",),
        subscribe=(*_RECORDED, "/recorder/bag_request"),
        lifecycle=True,
    ),
    "trainer_node": Policy(publish=("/mile/checkpoint",), serves=("/trainer/train",)),
    "session_manager": Policy(
        publish=("/session/progress", "/mile/checkpoint"),
        subscribe=("/episode/end", "/mile/active_checkpoint"),
        calls=(
            "/episode/reset",
            "/metaworld_bridge/change_state",
            "/metaworld_bridge/get_state",
            "/widowx_driver/change_state",
            "/widowx_driver/get_state",
            "/policy_node/change_state",
            "/policy_node/get_state",
            "/policy/reset",
            "/arbitration/reset",
            "/simulated_human/reset",
            "/simulated_human/enable",
            "/recorder_node/change_state",
            "/recorder_node/get_state",
            "/trainer/train",
        ),
        sets_parameters_of=("recorder_node", "metaworld_bridge", "widowx_driver", "simulated_human"),
    ),
    "widowx_driver": Policy(
        # and, through interbotix_xs_modules' node in the same process, the arm's driver (ARM_TOPICS)
        publish=("/robot/state", "/robot/ee_pose", "/robot/safety", "/robot/success", "/episode/end", ARM),
        subscribe=("/mile/executed_action", "/teleop/joy", "/teleop/status", ARM, "/tf", "/tf_static"),
        calls=(ARM,),
        serves=(
            "/episode/reset",
            "/robot/home",
            "/robot/estop",
            "/robot/clear_estop",
            "/robot/torque",
        ),
        lifecycle=True,
    ),
    "webcam_node": Policy(publish=("/camera/image_raw", "/camera/status")),
    "r3m_encoder": Policy(publish=("/camera/embedding",), subscribe=("/camera/image_raw",)),
    "ps3_teleop": Policy(publish=("/teleop/joy", "/teleop/status")),
    # The trainer host's mirror: asks the recorder for finished bags, stands in front of the trainer.
    "bag_mirror": Policy(
        publish=("/recorder/bag_request",),
        subscribe=("/recorder/bag_reply",),
        serves=("/trainer/train", "/bag_mirror/sync"),
        calls=("/trainer/train_local",),
    ),
    # The Foxglove live view reads what the bags record; `mile-ros sim` refuses it on a secured domain
    # (it serves a WebSocket without authentication), but a keystore still names what it may read.
    "foxglove_bridge": Policy(subscribe=LIVE_TOPICS),
    # interbotix's own processes on the robot computer (xs_sdk, robot_state_publisher), which the
    # secured domain would otherwise shut out: run them with --enclave /mile_ros/interbotix.
    INTERBOTIX: Policy(publish=(ARM, "/tf", "/tf_static"), subscribe=(ARM,), serves=(ARM,), node=ARM.lstrip("/")),
    # A person's tools: read everything, stop and home the arm; no commands, teleop or checkpoints.
    OPERATOR: Policy(
        subscribe=("/*",),
        calls=("/robot/home", "/robot/estop", "/robot/clear_estop", "/robot/torque"),
        node="_ros2cli_*",  # the ros2 command's nodes (_ros2cli_<pid>, its daemon _ros2cli_daemon_...)
    ),
}


def default_enclaves() -> list[str]:
    """Every node of the simulated and the real-robot session, interbotix's driver and the operator's shell."""
    from mile_ros.nodes import NODES

    return [*NODES, INTERBOTIX, OPERATOR]


def enclave_name(node: str) -> str:
    """``policy_node`` -> ``/mile_ros/policy_node`` (an enclave name as given is kept)."""
    return node if node.startswith("/") else f"{ENCLAVE_PREFIX}/{node}"


def enclave_dir(keystore: Path, enclave: str) -> Path:
    """Where rcl looks for an enclave's files: ``KEYSTORE/enclaves`` + the enclave name."""
    return Path(keystore) / "enclaves" / enclave_name(enclave).lstrip("/")


def _dds_topics(policy: Policy, node: str) -> tuple[list[str], list[str]]:
    """The policy in DDS topic names (rmw's mangling: ``rt/``, ``rq/...Request``, ``rr/...Reply``)."""
    pub = [f"rt{t}" for t in policy.publish] + list(_COMMON_PUB) + list(policy.extra_publish)
    sub = [f"rt{t}" for t in policy.subscribe] + list(_COMMON_SUB)
    own = [f"/{node}/{s}" for s in _NODE_SERVICES + (LIFECYCLE_SERVICES if policy.lifecycle else ())]
    if policy.lifecycle:
        pub.append(f"rt/{node}/transition_event")
    for service in (*policy.serves, *own):
        sub.append(f"rq{service}Request")
        pub.append(f"rr{service}Reply")
    params = [f"/{other}/{s}" for other in policy.sets_parameters_of for s in _PARAMETER_SERVICES]
    for service in (*policy.calls, *params):
        pub.append(f"rq{service}Request")
        sub.append(f"rr{service}Reply")
    return list(dict.fromkeys(pub)), list(dict.fromkeys(sub))


def _domains_xml(domains: tuple[int, int], indent: str) -> str:
    lo, hi = domains
    return f"{indent}<domains>\n{indent}  <id_range><min>{lo}</min><max>{hi}</max></id_range>\n{indent}</domains>\n"


def governance_xml(domains: tuple[int, int] = DOMAINS) -> str:
    """The domain's rules: only authenticated, permitted participants; everything protected."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-SECURITY/20170901/omg_shared_ca_governance.xsd">\n'
        "  <domain_access_rules>\n"
        "    <domain_rule>\n"
        + _domains_xml(domains, "      ")
        + "      <allow_unauthenticated_participants>false</allow_unauthenticated_participants>\n"
        "      <enable_join_access_control>true</enable_join_access_control>\n"
        "      <discovery_protection_kind>ENCRYPT</discovery_protection_kind>\n"
        "      <liveliness_protection_kind>ENCRYPT</liveliness_protection_kind>\n"
        # SIGN: every RTPS message is authenticated; the payloads are encrypted per topic below.
        "      <rtps_protection_kind>SIGN</rtps_protection_kind>\n"
        "      <topic_access_rules>\n"
        "        <topic_rule>\n"
        "          <topic_expression>*</topic_expression>\n"
        "          <enable_discovery_protection>true</enable_discovery_protection>\n"
        "          <enable_liveliness_protection>true</enable_liveliness_protection>\n"
        "          <enable_read_access_control>true</enable_read_access_control>\n"
        "          <enable_write_access_control>true</enable_write_access_control>\n"
        "          <metadata_protection_kind>ENCRYPT</metadata_protection_kind>\n"
        "          <data_protection_kind>ENCRYPT</data_protection_kind>\n"
        "        </topic_rule>\n"
        "      </topic_access_rules>\n"
        "    </domain_rule>\n"
        "  </domain_access_rules>\n"
        "</dds>\n"
    )


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def permissions_xml(
    enclave: str,
    policy: Policy,
    not_before: dt.datetime,
    not_after: dt.datetime,
    domains: tuple[int, int] = DOMAINS,
) -> str:
    """One grant for the enclave's certificate subject: its node's topics, everything else denied."""
    name = enclave_name(enclave)
    node = policy.node or name.rsplit("/", 1)[-1]
    pub, sub = _dds_topics(policy, node)

    def topics(kind: str, names: Sequence[str]) -> str:
        rows = "".join(f"            <topic>{escape(t)}</topic>\n" for t in names)
        return f"        <{kind}>\n          <topics>\n{rows}          </topics>\n        </{kind}>\n"

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-SECURITY/20170901/omg_shared_ca_permissions.xsd">\n'
        "  <permissions>\n"
        f'    <grant name="{escape(name)}">\n'
        f"      <subject_name>CN={escape(name)}</subject_name>\n"
        f"      <validity>\n        <not_before>{_iso(not_before)}</not_before>\n"
        f"        <not_after>{_iso(not_after)}</not_after>\n      </validity>\n"
        "      <allow_rule>\n"
        + _domains_xml(domains, "        ")
        + topics("publish", pub)
        + topics("subscribe", sub)
        + "      </allow_rule>\n"
        "      <default>DENY</default>\n"
        "    </grant>\n"
        "  </permissions>\n"
        "</dds>\n"
    )


# ---- keys, certificates, signatures ---------------------------------------------------------------


def _crypto():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import pkcs7
    except ImportError as exc:  # an optional dependency: the `ros`/`security` extras install it
        raise RuntimeError("DDS security needs the 'cryptography' package: pip install cryptography") from exc
    return x509, hashes, serialization, ec, pkcs7


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Atomically, a private file readable by its owner only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _name(common_name: str):
    x509, *_ = _crypto()
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key, issuer_cert, issuer_key, not_before, not_after, ca: bool):
    x509, hashes, *_ = _crypto()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None if not ca else 0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = dict(key_cert_sign=True, crl_sign=True, digital_signature=True)
    else:
        usage = dict(key_cert_sign=False, crl_sign=False, digital_signature=True)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    builder = builder.add_extension(
        x509.KeyUsage(
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
            **usage,
        ),
        critical=True,
    )
    return builder.sign(issuer_key, hashes.SHA256())


def sign_smime(data: bytes, cert, key) -> bytes:
    """An S/MIME detached signature in text mode, as ``openssl smime -sign -text`` makes and the
    builtin Access-Permissions plugin reads (governance and permissions documents)."""
    _, hashes, serialization, _, pkcs7 = _crypto()
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Text])
    )


def verify_smime(signed: Path, ca_cert: Path) -> bytes:
    """Check an S/MIME file against the CA with ``openssl smime -verify``; return the signed content.

    OpenSSL is what Fast DDS itself verifies with, so the check is the plugin's, not ours again.
    Raises ValueError with OpenSSL's words when the signature or the chain does not verify.
    """
    import subprocess

    proc = subprocess.run(
        ["openssl", "smime", "-verify", "-in", str(signed), "-CAfile", str(ca_cert), "-text"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ValueError(f"{signed}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _load_or_make_ca(keystore: Path, not_before, not_after):
    x509, _, serialization, ec, _ = _crypto()
    key_path, cert_path = keystore / "private" / "ca.key.pem", keystore / "public" / "ca.cert.pem"
    if key_path.is_file() and cert_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key, False
    if key_path.exists() or cert_path.exists():
        raise FileExistsError(f"{keystore}: has only one of private/ca.key.pem and public/ca.cert.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(f"{ENCLAVE_PREFIX} keystore CA", key, None, key, not_before, not_after, ca=True)
    (keystore / "private").mkdir(parents=True, exist_ok=True)
    os.chmod(keystore / "private", 0o700)
    pem = serialization.Encoding.PEM
    _write(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private=True,
    )
    _write(cert_path, cert.public_bytes(pem))
    return cert, key, True


def create_keystore(
    keystore: Path,
    enclaves: Iterable[str] | None = None,
    *,
    domains: tuple[int, int] = DOMAINS,
    validity_days: int = VALIDITY_DAYS,
    policies: dict[str, Policy] | None = None,
) -> list[Path]:
    """Create (or extend) a keystore and one enclave per name; return the enclave folders.

    An existing keystore's CA is reused, so enclaves added later trust the same CA; an enclave that
    exists already is made anew (new key and certificate). ``enclaves``: node names (``policy_node``)
    or enclave names (``/mile_ros/policy_node``); default :func:`default_enclaves`. Each name's last
    part selects its policy in ``policies`` (default :data:`NODE_POLICIES`); unknown ones are refused.
    """
    _, _, serialization, ec, _ = _crypto()
    policies = NODE_POLICIES if policies is None else policies
    names = [enclave_name(e) for e in (default_enclaves() if enclaves is None else enclaves)]
    unknown = [n for n in names if n.rsplit("/", 1)[-1] not in policies]
    if unknown:
        raise ValueError(f"no policy for enclave(s) {', '.join(unknown)}; known: {', '.join(policies)}")
    lo, hi = domains
    if not 0 <= lo <= hi <= 232:
        raise ValueError(f"domains {lo}-{hi}: need 0 <= min <= max <= 232")
    keystore = Path(keystore)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=validity_days)
    ca_cert, ca_key, _ = _load_or_make_ca(keystore, not_before, not_after)
    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem)

    governance = governance_xml(domains).encode()
    governance_p7s = sign_smime(governance, ca_cert, ca_key)
    _write(keystore / "public" / "governance.xml", governance)
    _write(keystore / "public" / "governance.p7s", governance_p7s)

    made = []
    for name in names:
        folder = enclave_dir(keystore, name)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, ca_cert, ca_key, not_before, not_after, ca=False)
        permissions = permissions_xml(name, policies[name.rsplit("/", 1)[-1]], not_before, not_after, domains)
        _write(
            folder / "key.pem",
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            private=True,
        )
        _write(folder / "cert.pem", cert.public_bytes(pem))
        _write(folder / "identity_ca.cert.pem", ca_pem)
        _write(folder / "permissions_ca.cert.pem", ca_pem)
        _write(folder / "governance.p7s", governance_p7s)
        _write(folder / "permissions.xml", permissions.encode())
        _write(folder / "permissions.p7s", sign_smime(permissions.encode(), ca_cert, ca_key))
        made.append(folder)
    return made


def security_env(keystore: Path, strategy: str = "Enforce") -> dict[str, str]:
    """The environment rcl reads to turn security on for every node started with ``--enclave``."""
    return {
        "ROS_SECURITY_ENABLE": "true",
        "ROS_SECURITY_STRATEGY": strategy,
        "ROS_SECURITY_KEYSTORE": str(Path(keystore).resolve()),
    }


class SecurityUnavailableError(RuntimeError):
    """DDS security cannot be turned on here; the message says why (never run insecurely instead)."""


# What rmw_fastrtps answers when Fast DDS was built without -DSECURITY=ON (the PyPI build, 3.2.x).
NO_PLUGINS = "doesn't have the security libraries"

_PROBE = """
import sys, rclpy
rclpy.init(args=sys.argv[1:])
node = rclpy.create_node("mile_ros_security_probe")
node.destroy_node()
rclpy.shutdown()
print("secured node up")
"""


def probe_secure_node(keystore: Path, enclave: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> None:
    """Start a throwaway rclpy node with security enforced and ``enclave``'s keys, in a subprocess.

    Returns when the node came up secured; raises :class:`SecurityUnavailableError` with rcl's own words
    otherwise, e.g. a Fast DDS without the builtin plugins (PKI-DH, AES-GCM-GMAC, Access-Permissions),
    which is what ``ros-fastdds`` from PyPI is. A real try rather than a look at headers or symbols:
    what counts is whether the RMW this interpreter loads will enforce the keystore.
    """
    import subprocess
    import sys

    run_env = dict(os.environ if env is None else env)
    run_env.update(security_env(keystore))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, "--ros-args", "--enclave", enclave_name(enclave)],
            env=run_env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        what = f"a node with enclave {enclave_name(enclave)} did not start within {timeout:.0f} s"
        raise SecurityUnavailableError(what) from None
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    if proc.returncode == 0 and "secured node up" in out:
        return
    if NO_PLUGINS in out:
        raise SecurityUnavailableError(
            "this ROS 2 installation's Fast DDS has no DDS security plugins (rmw_fastrtps: \"This Fast DDS "
            "version doesn't have the security libraries\"; the PyPI build of ros-fastdds is compiled without "
            "-DSECURITY=ON). Run secured sessions on a ROS 2 distribution's Fast DDS (docs/real-robot.md)."
        )
    lines = [line for line in out.splitlines() if "error" in line.lower()] or out.strip().splitlines()[-3:]
    raise SecurityUnavailableError(
        f"a node with enclave {enclave_name(enclave)} did not come up secured: {' / '.join(lines).strip()}"
    )
