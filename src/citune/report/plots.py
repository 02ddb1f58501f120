"""Matplotlib figures as PNG bytes (Agg canvas, no pyplot state); None values become gaps.

Every function returns None when there is nothing to draw, so callers can skip the plot.
"""
from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Values = Sequence[Optional[float]]


def _array(values: Values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float, height: float) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


# Series that coincide (e.g. two strategies with equal scores) must stay visible: each line gets its own
# marker and dash pattern, and earlier lines larger markers, so a later line drawn on top leaves them showing.
_MARKERS = "osD^vPX*"
_DASHES = ["-", "--", "-.", ":"]


def _score_axis(ax, values: np.ndarray, pad: float = 0.0) -> None:
    """Scores are never negative: start the y axis at 0, and show 0..1 rather than ±0.05 when all are 0."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() >= 0:
        top = ax.get_ylim()[1] if finite.max() > 0 else 1.0
        ax.set_ylim(-pad * top, top)  # lines: a hair below 0, so that markers at 0 are not cut by the frame


def _short(label: str, n: int = 18) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def heatmap(rows: Sequence[Values], row_labels: Sequence[str], col_labels: Sequence[str], title: str,
            cmap: str = "viridis", digits: int = 1) -> bytes | None:
    """An annotated heatmap; missing entries are blank cells marked `–`."""
    data = np.array([_array(r) for r in rows]) if rows else np.zeros((0, 0))
    if data.size == 0 or np.all(np.isnan(data)):
        return None
    n_rows, n_cols = data.shape
    fig, ax = _figure(max(4.0, 1.0 + 0.8 * n_cols), max(2.5, 1.0 + 0.45 * n_rows))
    masked = np.ma.masked_invalid(data)
    image = ax.imshow(masked, cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax)
    lo, hi = np.nanmin(data), np.nanmax(data)
    for i in range(n_rows):
        for j in range(n_cols):
            v = data[i, j]
            text = "–" if np.isnan(v) else f"{v:.{digits}f}"
            dark = not np.isnan(v) and hi > lo and (v - lo) / (hi - lo) < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(n_cols), [_short(c) for c in col_labels], rotation=30, ha="right")
    ax.set_yticks(range(n_rows), [_short(r, 24) for r in row_labels])
    ax.set_title(title)
    return _png(fig)


def lines(series: dict[str, tuple[Sequence, Values, Values | None, Values | None]], title: str, xlabel: str,
          ylabel: str, reference: float | None = None) -> bytes | None:
    """One line per label: {label: (x, y, band_low, band_high)}; bands are shaded when given."""
    if not any(np.any(~np.isnan(_array(y))) for _, y, _, _ in series.values()):
        return None
    fig, ax = _figure(6.4, 3.8)
    drawn = []
    for k, (label, (x, y, low, high)) in enumerate(series.items()):
        (line,) = ax.plot(list(x), _array(y), marker=_MARKERS[k % len(_MARKERS)],
                          markersize=max(3.0, 9.0 - 1.5 * k), linestyle=_DASHES[k % len(_DASHES)], label=label)
        drawn.append(_array(y))
        if low is not None and high is not None:
            ax.fill_between(list(x), _array(low), _array(high), color=line.get_color(), alpha=0.2)
            drawn += [_array(low), _array(high)]
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
        drawn.append(np.array([reference]))
    _score_axis(ax, np.concatenate(drawn), pad=0.03)
    ax.set_xticks(sorted({int(v) for _, (x, *_r) in series.items() for v in x}))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def grouped_bars(categories: Sequence[str], series: dict[str, Values], title: str, ylabel: str,
                 errors: dict[str, tuple[Values, Values]] | None = None) -> bytes | None:
    """Bars per category, one colour per series; `errors` gives (below, above) error lengths."""
    if not categories or not any(np.any(~np.isnan(_array(v))) for v in series.values()):
        return None
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(categories))
    fig, ax = _figure(max(5.0, 1.2 + 0.5 * len(categories) * n), 3.8)
    for k, (label, values) in enumerate(series.items()):
        err = None
        if errors and label in errors:
            err = np.nan_to_num(np.array([_array(errors[label][0]), _array(errors[label][1])]))
        ax.bar(x + (k - (n - 1) / 2) * width, np.nan_to_num(_array(values)), width, label=label, yerr=err,
               capsize=3 if err is not None else 0)
    _score_axis(ax, np.concatenate([_array(v) for v in series.values()]))
    ax.set_xticks(x, [_short(c) for c in categories], rotation=30, ha="right")
    ax.set(title=title, ylabel=ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def stacked_bars(categories: Sequence[str], stacks: dict[str, Sequence[float]], title: str,
                 ylabel: str) -> bytes | None:
    """One bar per category, stacked by the keys of `stacks`."""
    if not categories or not any(sum(v) for v in stacks.values()):
        return None
    fig, ax = _figure(max(5.0, 1.5 + 0.6 * len(categories)), 3.8)
    bottom = np.zeros(len(categories))
    for label, values in stacks.items():
        ax.bar(range(len(categories)), values, bottom=bottom, label=_short(label, 24))
        bottom += np.array(values, dtype=float)
    ax.set_xticks(range(len(categories)), [_short(c) for c in categories], rotation=30, ha="right")
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=8, title="source task", title_fontsize=8)
    return _png(fig)
