"""Failed client authentications, counted per client over a sliding minute: past the limit the
token endpoint answers 429 until the oldest failure is a minute old, whatever is presented, so
guessing keys or replaying assertions gets nowhere fast. Per server process."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

WINDOW = 60.0
MAX_CLIENTS = 10_000


class FailureLimiter:
    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        horizon = self._clock() - WINDOW
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again; None when it may now."""
        failures = self._recent(client)
        if len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + WINDOW - self._clock()))

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        failures.append(self._clock())
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > MAX_CLIENTS:
            self._failures.popitem(last=False)
