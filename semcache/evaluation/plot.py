"""Charts of a `semcache eval` report: the static sweep as curves, the policy as a point.

matplotlib is optional (`pip install 'semcache[eval]'`) and imported only here, when a chart
is asked for; it renders with Agg (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from semcache.evaluation.report import Report


class PlotError(RuntimeError):
    """The chart cannot be drawn (matplotlib missing, or the file cannot be written)."""


def _curve(ax: Any, sweep: list[dict], x: str, y: str) -> None:
    points = [(r[x], r[y], r["threshold"]) for r in sweep if r[x] is not None and r[y] is not None]
    if not points:
        return
    ax.plot(
        [p[0] for p in points],
        [p[1] for p in points],
        "-",
        color="tab:blue",
        label="static threshold 0.50-0.99",
        zorder=1,
    )
    last: tuple[float, float] | None = None
    for px, py, t in points:
        # Label 0.5, 0.6, ... on the curve, unless on top of the previous label.
        crowded = last is not None and abs(px - last[0]) < 0.04 and abs(py - last[1]) < 0.04
        if round(t * 100) % 10 == 0 and not crowded:
            last = (px, py)
            ax.annotate(
                f"{t:.1f}",
                (px, py),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
                color="tab:blue",
            )
            ax.plot([px], [py], ".", color="tab:blue")


def _point(ax: Any, row: dict, x: str, y: str, label: str, style: str, color: str) -> None:
    if row.get(x) is not None and row.get(y) is not None:
        ax.plot([row[x]], [row[y]], style, color=color, markersize=11, label=label, zorder=3)


def plot_report(report: Report, out: Path) -> None:
    """Writes a PNG: precision vs recall and, for the stream protocol, wrong-hit rate vs hit
    rate beside it; the policy and the static threshold of the same recall are marked."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotError(
            "--plot needs matplotlib: pip install 'semcache[eval]' (or matplotlib)"
        ) from e
    stream = report.protocol == "stream"
    panels = 2 if stream else 1
    figure = Figure(figsize=(6.5 * panels, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    name = Path(report.data).name or "pairs"
    policy, comparison = report.policy, report.comparison
    static = next(r for r in report.sweep if r["threshold"] == comparison["static_threshold"])
    policy_label = f"policy {policy['name']}".strip()
    static_label = f"static {static['threshold']:.2f} (same recall)"
    charts = [("recall", "precision", "precision vs recall")]
    if stream:
        charts.append(("hit_rate", "wrong_hit_rate", "wrong-hit rate vs hit rate"))
    for ax, (x, y, title) in zip(axes, charts, strict=True):
        _curve(ax, report.sweep, x, y)
        _point(ax, static, x, y, static_label, "o", "tab:orange")
        _point(ax, policy, x, y, policy_label, "*", "tab:red")
        ax.set_xlabel(x.replace("_", " "))
        ax.set_ylabel(y.replace("_", " "))
        ax.set_title(f"{name} ({report.protocol}, split {report.split}): {title}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    try:
        figure.savefig(out, dpi=110)
    except OSError as e:
        raise PlotError(f"{out}: {e.strerror or e}") from e
