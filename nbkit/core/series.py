"""Series of bounded size for live charts: append points forever, keep at most `max_buckets`
summaries. When the buckets overflow, neighbours merge pairwise and the bucket width doubles, so an
append costs O(1) amortised and drawing costs O(max_buckets), whatever the length of training.

`minmax` keeps each bucket's lowest and highest point (loss spikes stay visible, as in min/max
decimation); `mean` keeps the average (smoothed curves, learning rate). Plain Python: no UI here;
the full-resolution history stays in `Run.history` and `metrics.jsonl`.
"""

from __future__ import annotations

import math


class BoundedSeries:
    __slots__ = ("max_buckets", "mode", "width", "n", "_b")

    def __init__(self, max_buckets: int = 500, mode: str = "minmax"):
        if mode not in ("minmax", "mean"):
            raise ValueError(f"mode must be 'minmax' or 'mean', got {mode!r}")
        self.max_buckets, self.mode = max_buckets, mode
        self.width = 1  # raw points per bucket
        self.n = 0
        # per bucket: [count, x_min, y_min, x_max, y_max, x_sum, y_sum]
        self._b: list[list[float]] = []

    def append(self, x: float, y: float) -> None:
        if y is None or not math.isfinite(y):
            return
        self.n += 1
        b = self._b
        if b and b[-1][0] < self.width:
            last = b[-1]
            last[0] += 1
            if y < last[2]:
                last[1], last[2] = x, y
            if y >= last[4]:
                last[3], last[4] = x, y
            last[5] += x
            last[6] += y
        else:
            b.append([1, x, y, x, y, x, y])
            if len(b) > self.max_buckets:
                self._merge()

    def _merge(self) -> None:
        merged = []
        b = self._b
        for i in range(0, len(b) - 1, 2):
            p, q = b[i], b[i + 1]
            lo = (p[1], p[2]) if p[2] <= q[2] else (q[1], q[2])
            hi = (q[3], q[4]) if q[4] >= p[4] else (p[3], p[4])
            merged.append([p[0] + q[0], lo[0], lo[1], hi[0], hi[1], p[5] + q[5], p[6] + q[6]])
        if len(b) % 2:
            merged.append(b[-1])
        self._b = merged
        self.width *= 2

    def points(self) -> tuple[list[float], list[float]]:
        """The points to draw, in x order. Once the series has more than `max_buckets // 2` buckets it
        draws exactly that many (2 points each for minmax), so what is sent per update stays the same
        size from the first thousand steps to the millionth."""
        xs: list[float] = []
        ys: list[float] = []
        for count, x_lo, y_lo, x_hi, y_hi, x_sum, y_sum in self._groups():
            if self.mode == "mean":
                xs.append(x_sum / count)
                ys.append(y_sum / count)
            elif count == 1 or x_lo == x_hi:
                xs.append(x_lo)
                ys.append(y_lo)
            else:
                first, second = ((x_lo, y_lo), (x_hi, y_hi)) if x_lo < x_hi else ((x_hi, y_hi), (x_lo, y_lo))
                xs += [first[0], second[0]]
                ys += [first[1], second[1]]
        return xs, ys

    def _groups(self) -> list[list[float]]:
        """Buckets merged (unevenly, by position) down to `max_buckets // 2` groups."""
        b = self._b
        target = max(1, self.max_buckets // 2)
        if len(b) <= target:
            return b
        out = []
        for g in range(target):
            part = b[g * len(b) // target:(g + 1) * len(b) // target]
            lo = min(part, key=lambda r: r[2])
            hi = max(part, key=lambda r: r[4])
            out.append([sum(r[0] for r in part), lo[1], lo[2], hi[3], hi[4],
                        sum(r[5] for r in part), sum(r[6] for r in part)])
        return out

    def __len__(self) -> int:
        return self.n
