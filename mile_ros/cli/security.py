"""``mile-ros security``: a DDS-security keystore for the session's nodes (SROS2 layout, no ``ros2 security``).

``create KEYSTORE`` makes the CA (or reuses the keystore's), the signed governance and one enclave per
node, ``/mile_ros/<node>``, whose signed permissions allow only what that node publishes, subscribes
and calls. ``check KEYSTORE`` starts a node with one enclave and security enforced, and says whether
this machine's ROS 2 can run it secured. docs/real-robot.md: a secured session across two machines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _domains(text: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.partition("-")
        pair = (int(lo), int(hi or lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want MIN-MAX or ID, got {text!r}") from None
    if not 0 <= pair[0] <= pair[1] <= 232:
        raise argparse.ArgumentTypeError(f"{text}: need 0 <= MIN <= MAX <= 232")
    return pair


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "security", help="DDS-security keystore for the session's nodes", description=__doc__.splitlines()[0]
    )
    cmds = p.add_subparsers(dest="security_command", required=True, metavar="ACTION")
    c = cmds.add_parser("create", help="create or extend a keystore with one enclave per node")
    c.add_argument("keystore", type=Path, help="keystore folder (an existing one's CA is reused)")
    c.add_argument(
        "--enclaves",
        help="comma-separated node names or enclave names (default: every node of the simulated and the "
        "real-robot session, and 'operator' for a person's ros2 commands)",
    )
    c.add_argument("--domains", type=_domains, default=(0, 101), help="domain ids the keystore is for (default 0-101)")
    c.add_argument("--days", type=int, default=3650, help="validity of certificates and permissions (default 3650)")
    c.set_defaults(func=create)
    k = cmds.add_parser("check", help="start a node with an enclave and security enforced")
    k.add_argument("keystore", type=Path)
    k.add_argument("--enclave", default="policy_node", help="enclave to try (default /mile_ros/policy_node)")
    k.set_defaults(func=check)


def create(args: argparse.Namespace) -> int:
    from mile_ros.graph.security import create_keystore, default_enclaves

    enclaves = [e.strip() for e in args.enclaves.split(",") if e.strip()] if args.enclaves else default_enclaves()
    if args.days < 1:
        print("mile-ros security: error: --days must be >= 1", file=sys.stderr)
        return 2
    try:
        made = create_keystore(args.keystore, enclaves, domains=args.domains, validity_days=args.days)
    except (ValueError, FileExistsError, RuntimeError, OSError) as exc:
        print(f"mile-ros security: error: {exc}", file=sys.stderr)
        return 2
    root = args.keystore.resolve()
    print(f"keystore {root}: CA public/ca.cert.pem, its key private/ca.key.pem (keep it on this machine)")
    for folder in made:
        print(f"  enclave /{folder.relative_to(root / 'enclaves')}")
    print(f"domains {args.domains[0]}-{args.domains[1]}; run nodes with ROS_SECURITY_ENABLE=true "
          f"ROS_SECURITY_STRATEGY=Enforce ROS_SECURITY_KEYSTORE={root} and --ros-args --enclave /mile_ros/<node>")
    return 0


def check(args: argparse.Namespace) -> int:
    from mile_ros.graph.security import SecurityUnavailableError, enclave_name, probe_secure_node

    try:
        probe_secure_node(args.keystore.resolve(), args.enclave)
    except SecurityUnavailableError as exc:
        print(f"mile-ros security: {exc}", file=sys.stderr)
        return 1
    print(f"a node with enclave {enclave_name(args.enclave)} came up with DDS security enforced")
    return 0
