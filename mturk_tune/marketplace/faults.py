"""Fault injection for the requester API: throttling, service faults and lost responses.

Real MTurk throttles bursts (``ThrottlingException: Rate exceeded``, which botocore retries)
and sometimes fails (``ServiceFault``, HTTP 500). ``drop`` applies the call and then loses
the answer (the client sees a ServiceFault and retries): exactly the case UniqueRequestToken
exists for, so a retried CreateHIT meets ``HitAlreadyExists``.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from .errors import SERVICE_FAULT, THROTTLING, MTurkError


@dataclass
class FaultPlan:
    """Fractions of requester API calls that fail, and a fixed extra latency. Deterministic for a seed."""

    throttle: float = 0.0
    fault: float = 0.0
    drop: float = 0.0
    latency_s: float = 0.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name in ("throttle", "fault", "drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultPlan.{name} must be a fraction between 0 and 1, got {value}")
        if self.throttle + self.fault + self.drop > 1.0:
            raise ValueError("FaultPlan fractions throttle + fault + drop must not exceed 1")
        self._rng = random.Random(self.seed)

    def draw(self) -> str | None:
        """'throttle', 'fault', 'drop' or None for one call."""
        if self.latency_s:
            time.sleep(self.latency_s)
        with self._lock:
            x = self._rng.random()
        if x < self.throttle:
            return "throttle"
        if x < self.throttle + self.fault:
            return "fault"
        if x < self.throttle + self.fault + self.drop:
            return "drop"
        return None


def throttled() -> MTurkError:
    return MTurkError("Rate exceeded", None, THROTTLING)


def service_fault(reason: str = "The service encountered an internal error; try again.") -> MTurkError:
    return MTurkError(reason, "AWS.MechanicalTurk.ServiceFault", SERVICE_FAULT)
