"""A confidence interval for the difference of two proportions: Newcombe's hybrid score.

Method 10 of R. G. Newcombe, "Interval estimation for the difference between independent
proportions: comparison of eleven methods", Statistics in Medicine 17 (1998) 873–890: each
proportion gets its Wilson score interval, and the difference's limits combine the distances
from each estimate to its own limits. It keeps its coverage for small groups and rates near
0 or 1, where the textbook (Wald) interval does not, and needs nothing beyond `math`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the normal distribution's 97.5th percentile


def wilson(successes: int, trials: int, *, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (no continuity correction)."""
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")  # not translated: a bug
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")  # not translated: a bug
    p = successes / trials
    z2 = z * z
    centre = 2 * trials * p + z2
    spread = z * math.sqrt(z2 + 4 * trials * p * (1 - p))
    denominator = 2 * (trials + z2)
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


@dataclass(frozen=True, slots=True)
class Difference:
    """p1 − p2 with its confidence interval."""

    estimate: float
    low: float
    high: float

    @property
    def covers_zero(self) -> bool:
        """Whether no difference at all is still plausible."""
        return self.low <= 0 <= self.high


def newcombe(x1: int, n1: int, x2: int, n2: int, *, z: float = Z_95) -> Difference:
    """x1/n1 − x2/n2 with Newcombe's hybrid score interval (method 10, 95 % by default)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z=z)
    l2, u2 = wilson(x2, n2, z=z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Difference(d, max(-1.0, low), min(1.0, high))
