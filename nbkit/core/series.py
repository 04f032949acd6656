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
    __slots__ = ("max_buckets", "mode", "width", "n", "_b", "_gen", "_frozen", "_frozen_gen", "_memo")

    def __init__(self, max_buckets: int = 500, mode: str = "minmax"):
        if mode not in ("minmax", "mean"):
            raise ValueError(f"mode must be 'minmax' or 'mean', got {mode!r}")
        self.max_buckets, self.mode = max_buckets, mode
        self.width = 1  # raw points per bucket
        self.n = 0
        # per bucket: [count, x_min, y_min, x_max, y_max, x_sum, y_sum]
        self._b: list[list[float]] = []
        # Drawing caches: buckets before the last never change until the next merge (`_gen`), so
        # their array is built once; `_memo` is the last points() while nothing was appended.
        self._gen = 0
        self._frozen = None
        self._frozen_gen = -1
        self._memo: tuple[int, tuple[list[float], list[float]]] | None = None

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
        self._gen += 1

    def points(self) -> tuple[list[float], list[float]]:
        """The points to draw, in x order. Once the series has more than `max_buckets // 2` buckets it
        draws exactly that many (2 points each for minmax), so what is sent per update stays the same
        size from the first thousand steps to the millionth. Vectorised: a live chart calls this a
        few times a second, in the kernel that trains."""
        import numpy as np

        if not self._b:
            return [], []
        if self._memo is not None and self._memo[0] == self.n:
            return self._memo[1]
        out = self._points(np.asarray(self._groups(), dtype=np.float64))  # (groups, 7)
        self._memo = (self.n, out)
        return out

    def _points(self, g) -> tuple[list[float], list[float]]:
        import numpy as np

        if self.mode == "mean":
            return (g[:, 5] / g[:, 0]).tolist(), (g[:, 6] / g[:, 0]).tolist()
        x_lo, y_lo, x_hi, y_hi = g[:, 1], g[:, 2], g[:, 3], g[:, 4]
        two = (g[:, 0] > 1) & (x_lo != x_hi)
        lo_first = x_lo < x_hi
        first_x = np.where(lo_first, x_lo, x_hi)
        first_y = np.where(lo_first, y_lo, y_hi)
        second_x = np.where(lo_first, x_hi, x_lo)
        second_y = np.where(lo_first, y_hi, y_lo)
        xs = np.stack([np.where(two, first_x, x_lo), second_x], axis=1).ravel()
        ys = np.stack([np.where(two, first_y, y_lo), second_y], axis=1).ravel()
        keep = np.stack([np.ones_like(two), two], axis=1).ravel()
        return xs[keep].tolist(), ys[keep].tolist()

    def _groups(self):
        """Buckets merged (unevenly, by position) down to `max_buckets // 2` groups."""
        import numpy as np

        b = self._b
        target = max(1, self.max_buckets // 2)
        if len(b) <= target:
            return b
        a = self._array()
        n = len(a)
        edges = (np.arange(target) * n) // target
        group = np.repeat(np.arange(target), np.diff(np.append(edges, n)))
        lo = np.lexsort((a[:, 2], group))[edges]  # per group, the first lowest point
        hi = np.lexsort((-a[:, 4], group))[edges]  # and the first highest
        out = np.empty((target, 7))
        out[:, 0] = np.add.reduceat(a[:, 0], edges)
        out[:, 1], out[:, 2] = a[lo, 1], a[lo, 2]
        out[:, 3], out[:, 4] = a[hi, 3], a[hi, 4]
        out[:, 5] = np.add.reduceat(a[:, 5], edges)
        out[:, 6] = np.add.reduceat(a[:, 6], edges)
        return out

    def _array(self):
        """All buckets as one (n, 7) float array, reusing the array of the unchanged ones."""
        import numpy as np

        b, k = self._b, len(self._b) - 1
        frozen = self._frozen
        if frozen is None or self._frozen_gen != self._gen or len(frozen) > k:
            frozen = np.asarray(b[:k], dtype=np.float64).reshape(-1, 7)
        elif len(frozen) < k:
            frozen = np.concatenate([frozen, np.asarray(b[len(frozen):k], dtype=np.float64)])
        self._frozen, self._frozen_gen = frozen, self._gen
        return np.concatenate([frozen, np.asarray([b[-1]], dtype=np.float64)])

    def __len__(self) -> int:
        return self.n


class MovingAverage:
    """The one smoothing rule for training curves: an exponential moving average with bias
    correction (pandas' `ewm(alpha, adjust=True).mean()`), so the first points are not pulled
    towards 0 or towards the first value. The live chart feeds it one loss per step; the saved
    figure and PNG run the same class over the history (`smooth()`), so they cannot disagree."""

    __slots__ = ("alpha", "_num", "_den")

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha
        self._num = 0.0
        self._den = 0.0

    def update(self, value: float) -> float | None:
        if value is None or not math.isfinite(value):
            return self.value
        keep = 1.0 - self.alpha
        self._num = self._num * keep + value
        self._den = self._den * keep + 1.0
        return self._num / self._den

    @property
    def value(self) -> float | None:
        return self._num / self._den if self._den else None


def smooth(values, alpha: float = 0.1) -> list[float]:
    """`MovingAverage` over a sequence (non-finite values hold the previous average)."""
    avg = MovingAverage(alpha)
    out = []
    for v in values:
        r = avg.update(float(v))
        out.append(float("nan") if r is None else r)
    return out


def metric_range(values) -> tuple[float, float] | None:
    """The axis range for evaluation metrics. Metrics that live in [0, 1] (accuracy, F1, ...) get an
    axis at least 0.2 wide on round tenths, so a flat 0.500-0.517 does not look like a steep climb;
    other values get their extent with 5% padding. None when there is nothing to draw."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    lo, hi = min(finite), max(finite)
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = math.floor(lo * 10 + 1e-9) / 10, math.ceil(hi * 10 - 1e-9) / 10
        grow_low = True
        while hi - lo < 0.2 - 1e-9:  # widen on both sides in turn, inside [0, 1]
            if (grow_low and lo > 0) or hi >= 1:
                lo = max(0.0, lo - 0.1)
            else:
                hi = min(1.0, hi + 0.1)
            grow_low = not grow_low
        return round(lo, 1), round(hi, 1)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 0.5
    return lo - pad, hi + pad
