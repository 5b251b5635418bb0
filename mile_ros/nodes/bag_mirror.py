"""bag_mirror: on the trainer's host, mirror the recorder's finished bags into the trainer's ``bags_dir``.

The trainer reads bags from its own disk; this node puts them there over ROS 2 (no shared storage).
It serves ``/trainer/train`` in front of the trainer: every finished bag the recorder offers is copied
first (resumable chunks, SHA-256 checked, never overwriting: :mod:`mile_ros.graph.bag_transfer`), then
the call goes on to the trainer, started with its service remapped::

    trainer_node --ros-args -r /trainer/train:=/trainer/train_local -p bags_dir:=DIR ...
    bag_mirror --ros-args -p bags_dir:=DIR

so the session manager calls ``/trainer/train`` as before and the update always sees every episode
recorded until then. Between updates it mirrors in the background (``sync_period_s``), so the call finds
little left to copy. A conflict (a bag here with other contents) or a copy that fails refuses the update
with the reason; nothing is deleted, and what was downloaded is kept for the next try.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
import uuid

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mile_ros.graph.bag_transfer import (
    CHUNK_BYTES,
    MAX_CHUNK_BYTES,
    BagMirror,
    MirrorReport,
    OfferedBag,
    TransferError,
    unpack_reply,
)
from mile_ros.graph.topics import topic_info
from mile_ros.nodes.common import Param, call_service, declare_parameters, qos
from mile_ros.nodes.msgtypes import msg_class

PARAMETERS = (
    Param("bags_dir", "bags", "this host's folder of mirrored bags: the trainer's bags_dir"),
    Param(
        "trainer_service",
        "trainer/train_local",
        "the local trainer's service, remapped there from /trainer/train, which this node serves instead",
    ),
    Param("chunk_bytes", CHUNK_BYTES, "bytes asked for in one request", (1024, MAX_CHUNK_BYTES)),
    Param("reply_timeout_s", 10.0, "a request not answered within this is sent again", (0.1, 600.0)),
    Param("attempts", 5, "sends of one request before the copy counts as failed", (1, 1000)),
    Param(
        "sync_period_s",
        10.0,
        "mirror in the background this often, s; 0: only on /trainer/train and /bag_mirror/sync",
        (0.0, 3600.0),
    ),
    Param("train_timeout_s", 3600.0, "longest wait for the local trainer's answer", (1.0, 1e6)),
)


class OfferClient:
    """Requests to the recorder's bag offer and their replies, matched by this client's id."""

    def __init__(self, node: Node, timeout_s: float, attempts: int) -> None:
        self.node = node
        self.client = uuid.uuid4().hex
        self.ids = itertools.count(1)
        self.timeout_s, self.attempts = timeout_s, attempts
        self.replies: dict[int, tuple[dict, bytes]] = {}
        self.waiting = 0  # the request being waited for: a late reply to an earlier one is dropped
        self.cond = threading.Condition()
        self.pub = node.create_publisher(String, "recorder/bag_request", qos("recorder/bag_request"))
        self.sub = node.create_subscription(
            msg_class(topic_info("recorder/bag_reply").type),
            "recorder/bag_reply",
            self.on_reply,
            qos("recorder/bag_reply"),
            callback_group=ReentrantCallbackGroup(),  # answered while a service callback waits
        )

    def on_reply(self, msg) -> None:
        try:
            meta, payload = unpack_reply(msg.data.tobytes())
        except (TransferError, ValueError):
            return
        if meta.get("client") != self.client:
            return  # another mirror's
        with self.cond:
            if meta.get("id") == self.waiting:
                self.replies[self.waiting] = (meta, payload)
                self.cond.notify_all()

    def connected(self) -> bool:
        return self.pub.get_subscription_count() > 0 and self.sub.get_publisher_count() > 0

    def request(self, **fields) -> tuple[dict, bytes]:
        """Send until answered (``attempts`` times, ``reply_timeout_s`` each); TransferError if not, or
        if the offer answered with an error."""
        for _ in range(self.attempts):
            deadline = time.monotonic() + self.timeout_s
            while not self.connected():  # reliable but volatile: a request sent before matching is lost
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            else:
                rid = next(self.ids)
                with self.cond:
                    self.waiting = rid
                self.pub.publish(String(data=json.dumps({"client": self.client, "id": rid, **fields})))
                with self.cond:
                    if self.cond.wait_for(lambda r=rid: r in self.replies, max(0.0, deadline - time.monotonic())):
                        meta, payload = self.replies.pop(rid)
                        if "error" in meta:
                            raise TransferError(f"the recorder refused {fields}: {meta['error']}")
                        return meta, payload
        raise TransferError(
            f"no answer from the recorder's bag offer ({fields.get('op')}) after {self.attempts} tries of "
            f"{self.timeout_s:g} s: is recorder_node running on the same ROS_DOMAIN_ID and reachable?"
        )

    def catalog(self) -> list[OfferedBag]:
        meta, _ = self.request(op="list")
        return [OfferedBag.from_json(b) for b in meta["bags"]]

    def fetch(self, bag: str, name: str, offset: int, length: int) -> tuple[int, str, bytes]:
        meta, payload = self.request(op="chunk", bag=bag, file=name, offset=offset, length=length)
        if meta.get("offset") != offset or meta.get("file") != name:
            raise TransferError(f"reply for {meta.get('file')}@{meta.get('offset')}, asked {name}@{offset}")
        return int(meta["size"]), str(meta["sha256"]), payload


class BagMirrorNode(Node):
    def __init__(self) -> None:
        super().__init__("bag_mirror")
        self.p = declare_parameters(self, PARAMETERS, strict=True)  # read at start: read-only
        self.offer = OfferClient(self, float(self.p["reply_timeout_s"]), int(self.p["attempts"]))
        self.mirror = BagMirror(self.p["bags_dir"], self.offer.fetch, int(self.p["chunk_bytes"]))
        self.mirror.ledger()  # an unreadable ledger stops the node at start-up, not mid-session
        self.sync_lock = threading.Lock()
        self.training = threading.Lock()
        self.stopping = threading.Event()
        self.context.on_shutdown(self.stopping.set)
        services = MutuallyExclusiveCallbackGroup()
        self.trainer = self.create_client(
            Trigger, self.p["trainer_service"], callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.create_service(Trigger, "trainer/train", self.on_train, callback_group=services)
        self.create_service(Trigger, "bag_mirror/sync", self.on_sync, callback_group=MutuallyExclusiveCallbackGroup())
        self.background = None
        if self.p["sync_period_s"] > 0:
            self.background = threading.Thread(target=self.keep_mirroring, daemon=True)
            self.background.start()

    def sync(self) -> MirrorReport:
        with self.sync_lock:
            report = self.mirror.sync(self.offer.catalog())
        if report.fetched or report.conflicts:
            self.get_logger().info(f"mirrored into {self.mirror.root}: {report.summary()}")
        return report

    def keep_mirroring(self) -> None:
        while not self.stopping.wait(self.p["sync_period_s"]):
            try:
                self.sync()
            except Exception as exc:  # the recorder away for a moment: the train call tries again
                self.get_logger().warning(f"background mirroring: {exc}")

    def on_sync(self, request, response):
        try:
            report = self.sync()
        except (TransferError, OSError) as exc:
            response.success, response.message = False, f"mirroring failed: {exc}"
            return response
        response.success = not report.conflicts
        response.message = json.dumps({**report.__dict__, "summary": report.summary()})
        return response

    def on_train(self, request, response):
        if not self.training.acquire(blocking=False):
            response.success, response.message = False, "already training"
            return response
        try:
            try:
                report = self.sync()
            except (TransferError, OSError) as exc:
                response.success, response.message = False, f"not training: mirroring the bags failed: {exc}"
                self.get_logger().error(response.message)
                return response
            if report.conflicts:
                response.success = False
                response.message = f"not training: bags here differ from the recorder's: {report.summary()}"
                self.get_logger().error(response.message)
                return response
            try:
                answer = call_service(self, self.trainer, Trigger.Request(), self.p["train_timeout_s"])
            except TimeoutError as exc:
                response.success, response.message = False, f"the local trainer: {exc}"
                return response
            response.success, response.message = answer.success, answer.message
            if answer.success:  # the trainer's JSON, with what was mirrored for it
                result = json.loads(answer.message)
                result["mirror"] = {"fetched": report.fetched, "bytes": report.bytes, "summary": report.summary()}
                response.message = json.dumps(result)
            return response
        finally:
            self.training.release()

    def close(self) -> None:
        self.stopping.set()


def main(args: list[str] | None = None) -> int:
    from mile_ros.nodes.common import run_node

    return run_node(BagMirrorNode, args, threads=4)


if __name__ == "__main__":
    sys.exit(main())
