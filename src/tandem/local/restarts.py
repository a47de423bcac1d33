"""When to restart a service that exited, and when its exits are a crash loop.

Pure bookkeeping over exit times, so the policy is tested without processes or clocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """Restart after `first_delay`, doubling up to `max_delay` while the service keeps
    failing; a run of `stable_after` seconds starts the doubling again. `crash_loop_exits`
    exits within `crash_loop_window` seconds stop the stack instead: restarting would only
    hide the problem."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 30.0
    crash_loop_exits: int = 5
    crash_loop_window: float = 60.0


class ExitHistory:
    """One service's recent exits."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._exits: deque[float] = deque()
        self._consecutive = 0

    @property
    def recent_exits(self) -> int:
        return len(self._exits)

    def restart_delay(self, now: float, uptime: float) -> float | None:
        """Record an exit at `now` after `uptime` seconds of running: the seconds to wait
        before restarting it, or None when this exit completes a crash loop."""
        policy = self.policy
        self._exits.append(now)
        while self._exits[0] < now - policy.crash_loop_window:
            self._exits.popleft()
        if len(self._exits) >= policy.crash_loop_exits:
            return None
        if uptime >= policy.stable_after:
            self._consecutive = 0
        self._consecutive += 1
        return float(min(policy.first_delay * 2 ** (self._consecutive - 1), policy.max_delay))
