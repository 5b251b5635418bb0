"""Checkpoints: everything needed to run a policy, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .intervention import ContinuousForm, DiscreteForm
from .model import MileModel
from .networks import PolicyNet, build_policy, std_mode_of
from .spec import Spec

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "MileCheckpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "mile_ros.checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, of another format or of another spec."""


def _net_record(net: PolicyNet) -> dict[str, Any]:
    return {
        "hidden": list(net.hidden),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
    }


def _net_from_record(spec: Spec, record: dict[str, Any]) -> PolicyNet:
    std = std_mode_of(record["state_dict"])
    net = build_policy(spec.stacked_dim, spec.act_dim, spec.discrete, record["hidden"], std)
    net.load_state_dict(record["state_dict"])
    net.eval()
    return net


@dataclass
class MileCheckpoint:
    """A policy, optionally its mental model and intervention parameters, and the spec they serve."""

    spec: Spec
    policy: PolicyNet
    mental: PolicyNet | None = None
    cost: float = 0.0
    sigma: float = 1.0
    discrete_form: str = DiscreteForm.PER_ACTION.value
    continuous_form: str = ContinuousForm.EXACT.value
    quadrature_nodes: int = 32
    padding: str = "repeat"
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_model(
        cls, spec: Spec, model: MileModel, padding: str = "repeat", meta: dict | None = None
    ) -> MileCheckpoint:
        return cls(
            spec,
            model.policy,
            model.mental,
            model.cost_value(),
            model.sigma_value(),
            model.discrete_model.form.value,
            model.continuous_model.form.value,
            model.continuous_model.nodes,
            padding,
            dict(meta or {}),
        )

    def intervention_model(self) -> MileModel | None:
        """The fitted intervention model (for predicted takeover probability), if the checkpoint has one."""
        if self.mental is None:
            return None
        model = MileModel(
            self.policy,
            self.mental,
            self.cost,
            self.sigma,
            discrete_form=self.discrete_form,
            continuous_form=self.continuous_form,
            quadrature_nodes=self.quadrature_nodes,
        )
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "spec": self.spec.to_dict(),
            "policy": _net_record(self.policy),
            "mental": _net_record(self.mental) if self.mental is not None else None,
            "intervention": {
                "cost": float(self.cost),
                "sigma": float(self.sigma),
                "discrete_form": str(self.discrete_form),
                "continuous_form": str(self.continuous_form),
                "quadrature_nodes": int(self.quadrature_nodes),
            },
            "padding": self.padding,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: readers see the old file or the new one, never a partial one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(self.to_dict(), f)
                f.flush()
                os.fsync(f.fileno())
            try:  # what we publish must load under weights_only, or it is not published at all
                torch.load(tmp, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise CheckpointError(f"refusing to write {path}: it would not load with weights_only ({exc})") from exc
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def load_checkpoint(path: str | os.PathLike, expected: Spec | None = None) -> MileCheckpoint:
    """Load a checkpoint; refuse a missing or corrupt file, another format, or a spec unlike ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a mile_ros checkpoint")
    if raw.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {raw.get('format_version')}, "
            f"this mile_ros reads {CHECKPOINT_VERSION}"
        )
    try:
        spec = Spec.from_dict(raw["spec"])
        if expected is not None:
            mismatch = expected.describe_mismatch(spec)
            if mismatch:
                raise CheckpointError(f"checkpoint {path} does not fit this policy: {mismatch}")
        policy = _net_from_record(spec, raw["policy"])
        mental = _net_from_record(spec, raw["mental"]) if raw.get("mental") else None
        inter = raw["intervention"]
        return MileCheckpoint(
            spec,
            policy,
            mental,
            float(inter["cost"]),
            float(inter["sigma"]),
            inter["discrete_form"],
            inter["continuous_form"],
            int(inter["quadrature_nodes"]),
            raw.get("padding", "repeat"),
            dict(raw.get("meta") or {}),
        )
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is damaged: {exc}") from exc
