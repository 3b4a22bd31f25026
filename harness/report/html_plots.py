"""The two pictures of a run on report.html: running BPB over the validation stream, and
each chunk's own BPB — one curve per run, so TTT and no-TTT can be laid over each other.

Why these two: a pre-quantization or re-scoring trick shows as a curve that is too good from
the first chunk (the running BPB starts low instead of settling), and an adapter that reads
ahead shows as per-chunk BPB that does not behave like learning from the past. matplotlib
draws them with the Agg backend straight to SVG text that is inlined in the page (no files,
no network, fonts as paths so the page looks the same everywhere). Each curve carries an
``id`` (``curve-running-N`` / ``curve-chunk-N``) so tests and readers can count them.
"""

from __future__ import annotations

import io
import math
from typing import Any

from harness.report.html_runs import Run

_MAX_MARKERS = 200  # a full validation run has ~1,900 chunks: dots would hide the line and bloat the SVG
_COLOURS = ("#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#495057")


def running_bpb_svg(pyplot: Any, runs: list[Run]) -> str:
    """Running BPB against targets scored so far, one line per run."""
    return _plot(
        pyplot,
        runs,
        kind="running",
        xs=lambda run: [point.target_end for point in run.points],
        ys=lambda run: [point.running_bpb for point in run.points],
        xlabel="validation targets scored",
        title="Running BPB over the validation stream",
    )


def chunk_bpb_svg(pyplot: Any, runs: list[Run]) -> str:
    """Each chunk's own BPB against its index, one line (with markers) per run."""
    return _plot(
        pyplot,
        runs,
        kind="chunk",
        xs=lambda run: [point.index for point in run.points],
        ys=lambda run: [point.chunk_bpb for point in run.points],
        xlabel="chunk",
        title="BPB of each chunk",
    )


def _plot(pyplot: Any, runs: list[Run], *, kind: str, xs: Any, ys: Any, xlabel: str, title: str) -> str:
    figure, axes = pyplot.subplots(figsize=(7.5, 3.4), dpi=100)
    try:
        for number, run in enumerate(runs):
            values = [y if math.isfinite(y) else math.nan for y in ys(run)]
            (line,) = axes.plot(
                xs(run),
                values,
                color=_COLOURS[number % len(_COLOURS)],
                marker="o" if kind == "chunk" and len(values) <= _MAX_MARKERS else None,
                markersize=3,
                linewidth=1.6,
                label=run.label,
            )
            line.set_gid(f"curve-{kind}-{number}")
        axes.set_xlabel(xlabel)
        axes.set_ylabel("bits per byte")
        axes.set_title(title, fontsize=11)
        axes.grid(True, alpha=0.3)
        if runs:
            axes.legend(fontsize=8, loc="best")
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        pyplot.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # the XML prolog and DOCTYPE are not allowed inside HTML
