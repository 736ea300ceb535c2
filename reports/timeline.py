"""The timeline picture: one lane per job, one bar per step execution, coloured by worker.

A killed execution (started, never ended) is cut at the fault and hatched with a red outline;
one that ended after a fault struck it (a paused zombie, a step in flight across a server
crash) is hatched with a dark outline. Kills and failpoints are marked on the struck lanes,
faults that last (pause, partition, slow link) are bands on them, a server crash is a band
across every lane, and every fault is labelled along the top edge, so a checkpoint replay
(steps 1..k-1 once, step k twice) reads at a glance. Lanes get thinner as jobs grow, the
height is capped, and past LABEL_ALL_UP_TO lanes only the faulted ones are named.
Drawn with matplotlib's object API (no pyplot, no global backend switch).
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from reports.model import FaultMark, RunView

WIDTH_IN = 12.5
DPI = 110
MAX_HEIGHT_IN = 13.0
TOP_IN, BOTTOM_IN = 0.7, 1.05  # room for the fault labels above, the axis and the legend below
LABEL_ALL_UP_TO = 24  # more lanes than this: only faulted lanes are named
PALETTE = ["#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac", "#ff9da7",
           "#86bcb6"]  # fmt: skip
KILL = "#d62728"
SERVER = "#555555"
FAILPOINT = "#7b2cbf"
OTHER = "#e377c2"
# Faults that last are bands on the lanes they struck (a server crash: across every lane).
BANDS = {"pause": ("#ff9f1c", "paused (SIGSTOP..SIGCONT)"), "partition": ("#17becf", "partitioned from the server"),
         "latency": ("#8c564b", "slow link")}  # fmt: skip
CUT_EDGE = "#d62728"
LATE_EDGE = "#222222"
CUT_HATCH = "////"
LATE_HATCH = "x"
MIN_CUT_PX = 12  # a kill often lands moments after the step started: keep the cut bar visible


def worker_colors(workers: list[str]) -> dict[str, str]:
    return {w: PALETTE[i % len(PALETTE)] for i, w in enumerate(workers)}


def _fault_color(kind: str) -> str:
    if kind in BANDS:
        return BANDS[kind][0]
    if kind == "server-crash":
        return SERVER
    if kind.startswith("failpoint"):
        return FAILPOINT
    if kind in ("kill", "kill-worker"):
        return KILL
    return OTHER


def _shape(m: FaultMark) -> str:
    """How a fault is drawn: "point" (failpoint), "line" (kill), "band" (lasts), "all" (server down)."""
    if m.kind.startswith("failpoint"):
        return "point"
    if m.kind == "server-crash":
        return "all"
    if m.kind in ("kill", "kill-worker") or (m.until is None and m.kind not in BANDS):
        return "line"
    return "band"


def _short(target: str) -> str:
    return target.replace("worker-", "w")


def _slots(executions: list[Any]) -> tuple[list[int], int]:
    """Greedy interval packing: a sub-row per execution so that overlapping ones never share one."""
    ends: list[float] = []
    slots = []
    for x in executions:  # in start order
        free = next((s for s, e in enumerate(ends) if e <= x.start + 1e-6), None)
        if free is None:
            free = len(ends)
            ends.append(x.drawn_end)
        else:
            ends[free] = x.drawn_end
        slots.append(free)
    return slots, max(1, len(ends))


def _label(m: FaultMark) -> str:
    if m.kind == "server-crash":
        return "server down" + (f" {m.until - m.t:.1f} s" if m.until is not None else "")
    label = m.kind.replace("failpoint-", "failpoint ") + " " + _short(m.target)
    if _shape(m) == "band" and m.until is not None:
        label += f" ({m.until - m.t:.1f} s)"
    return label


def draw(view: RunView) -> Figure | None:
    """The timeline figure of a run, or None when no step ever ran."""
    lanes = [ln for ln in view.lanes if ln.executions or ln.submitted is not None]
    if not lanes:
        return None
    n = len(lanes)
    lane_in = 0.42 if n <= 12 else 0.24 if n <= 40 else 0.19 if n <= 70 else max(0.05, 11.0 / n)
    plot_in = max(1.1, min(MAX_HEIGHT_IN - TOP_IN - BOTTOM_IN, n * lane_in))
    height = plot_in + TOP_IN + BOTTOM_IN
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.13, BOTTOM_IN / height, 0.85, plot_in / height))
    colors = worker_colors(view.workers)
    row = {ln.job: i for i, ln in enumerate(lanes)}
    span = max([view.span] + [x.drawn_end for ln in lanes for x in ln.executions]) or 1.0
    lane_px = plot_in * DPI / n
    tint = sum(ln.faulted for ln in lanes) <= n / 2  # tinting every lane would say nothing
    px_per_s = WIDTH_IN * 0.85 * DPI / span
    bar_h = 0.72

    # Lane backgrounds: faint stripes, a rose tint on lanes a fault struck.
    for i, ln in enumerate(lanes):
        if ln.faulted and tint:
            ax.axhspan(i - 0.5, i + 0.5, color="#fde2e2", zorder=0, lw=0)
        elif i % 2:
            ax.axhspan(i - 0.5, i + 0.5, color="#f4f5f7", zorder=0, lw=0)

    # Server down: a band across every lane. Faults that last: a band on the struck lanes.
    for m in view.marks:
        end = m.until if m.until is not None else span
        if _shape(m) == "all":
            ax.axvspan(m.t, max(end, m.t + span * 0.002), color=SERVER, alpha=0.16, zorder=1, lw=0)
            ax.axvline(m.t, color=SERVER, lw=1.4, ls="--", zorder=5)
        elif _shape(m) == "band":
            for job in m.jobs:
                i = row.get(job)
                if i is not None:
                    ax.fill_between([m.t, end], i - 0.5, i + 0.5, color=_fault_color(m.kind), alpha=0.28, zorder=1,
                                    lw=0)  # fmt: skip

    # Step executions; executions of one job that overlap in time (a zombie and its
    # replacement) share the lane in sub-rows so neither hides the other.
    halo = [patheffects.withStroke(linewidth=2.2, foreground="#222222")]
    shared: set[int] = set()  # lanes split in sub-rows
    for i, ln in enumerate(lanes):
        slots, k = _slots(ln.executions)
        if k > 1:
            shared.add(i)
        h = bar_h / k
        for x, slot in zip(ln.executions, slots, strict=True):
            y = i - bar_h / 2 + h * (slot + 0.5)
            # A kill usually lands moments after the step started: keep the cut bar visible.
            width = max(x.drawn_end - x.start, (MIN_CUT_PX if x.fate == "cut" else 1.5) / px_per_s)
            color = colors.get(x.worker, "#999999")
            if x.fate == "ok":
                ax.barh(
                    y, width, left=x.start, height=h, color=color, edgecolor="white", linewidth=0.4, zorder=3
                )
            else:  # the worker's colour, paler, under a hatch in the fate's colour
                edge = CUT_EDGE if x.fate == "cut" else LATE_EDGE
                ax.barh(y, width, left=x.start, height=h, color=color, alpha=0.6, linewidth=0, zorder=3)
                ax.barh(y, width, left=x.start, height=h, fill=False, hatch=CUT_HATCH if x.fate == "cut" else LATE_HATCH,
                        edgecolor=edge, linewidth=1.5, zorder=3.5)  # fmt: skip
            if lane_px / k >= 12 and width * px_per_s >= 11:
                ax.text(x.start + width / 2, y, str(x.step), ha="center", va="center", zorder=4, color="white",
                        fontsize=min(8.5, lane_px / k * 0.45), fontweight="bold", path_effects=halo)  # fmt: skip
        marker_size = max(3.0, min(9.0, lane_px * 0.5))
        if ln.submitted is not None:
            ax.plot([ln.submitted], [i], marker=">", ms=marker_size * 0.7, color="#888888", zorder=4, lw=0)
        if ln.done is not None:
            ax.plot([ln.done], [i], marker="o", ms=marker_size * 0.75, color="#111111", zorder=6, lw=0,
                    markerfacecolor="white", markeredgewidth=1.2)  # fmt: skip

    # Kills and failpoints on the lanes they struck: a line through the lane, a mark on its top edge.
    for m in view.marks:
        c = _fault_color(m.kind)
        if not m.jobs and _shape(m) != "all":  # nothing in flight on the target: faint, across all lanes
            ax.axvline(m.t, color=c, lw=0.9, ls=(0, (2, 3)), alpha=0.55, zorder=2)
        if _shape(m) not in ("line", "point"):
            continue
        for job in m.jobs:
            i = row.get(job)
            if i is None:
                continue
            ax.plot([m.t, m.t], [i - 0.5, i + 0.5], color=c, lw=2.0, zorder=7, solid_capstyle="butt")
            ax.plot([m.t], [i - 0.5], marker="D" if _shape(m) == "point" else "X", color=c, zorder=8,
                    lw=0, ms=max(4.0, min(9.0, lane_px * 0.42)), markeredgecolor="white", markeredgewidth=0.7,
                    clip_on=False)  # fmt: skip

    # Recovery: a dotted line from each fault to the moment the struck step started again.
    for r in view.fault_rows:
        i = row.get(r.job or "")
        if i is None or r.at is None or r.restart_s is None:
            continue
        c = _fault_color(r.kind)
        ax.plot([r.at, r.at + r.restart_s], [i, i], color=c, lw=1.3, ls=(0, (1.5, 1.5)), zorder=2.5)
        if lane_px >= 16 and r.restart_s * px_per_s >= 34 and i not in shared:
            ax.text(r.at + r.restart_s / 2, i - 0.08, f"{r.restart_s:.1f} s", ha="center", va="bottom", zorder=2.6,
                    fontsize=7.5, color=c)  # fmt: skip

    # Every fault labelled along the top edge (staggered when they crowd).
    last_x, level = -1e9, 0
    for m in sorted(view.marks, key=lambda m: m.t):
        level = (level + 1) % 3 if (m.t - last_x) * px_per_s < 90 else 0
        last_x = m.t
        c = _fault_color(m.kind)
        ax.annotate(_label(m), xy=(m.t, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, 3 + 11 * level), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8, color=c, fontweight="bold", annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": c, "lw": 0.8} if level else None)  # fmt: skip
        ax.plot([m.t], [1.0], marker="v", color=c, ms=6, transform=ax.get_xaxis_transform(), clip_on=False,
                zorder=9, lw=0)  # fmt: skip

    # Axes.
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(0, span * 1.01)
    ax.set_xlabel("seconds since the run started", fontsize=10)
    ax.grid(axis="x", color="#dddddd", lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    label_all = n <= LABEL_ALL_UP_TO
    ticks = [i for i, ln in enumerate(lanes) if label_all or ln.faulted]
    ax.set_yticks(ticks)
    ax.set_yticklabels([lanes[i].job for i in ticks], fontsize=8.5 if label_all else 7.5)
    for tick, i in zip(ax.get_yticklabels(), ticks, strict=True):
        if lanes[i].faulted:
            tick.set_color("#b00020")
            tick.set_fontweight("bold")
    ax.tick_params(axis="y", length=0)
    if not label_all:
        ax.set_ylabel(f"{n} jobs, in submission order (faulted ones named)", fontsize=9)
        ax.set_yticks(range(n), minor=True)
        ax.tick_params(axis="y", which="minor", length=2, color="#bbbbbb")

    # Legend: workers, then what the marks mean.
    handles: list[Any] = [Patch(facecolor=colors[w], label=w) for w in view.workers]
    fates = {x.fate for ln in lanes for x in ln.executions}
    if "cut" in fates:
        handles.append(
            Patch(facecolor="#cccccc", hatch=CUT_HATCH, edgecolor=CUT_EDGE, label="interrupted (no end)")
        )
    if "late" in fates:
        handles.append(
            Patch(facecolor="#cccccc", hatch=LATE_HATCH, edgecolor=LATE_EDGE, label="ended after a fault")
        )
    kinds = {m.kind for m in view.marks}
    if any(_fault_color(k) == KILL for k in kinds):
        handles.append(Line2D([], [], color=KILL, marker="X", lw=2, label="kill -9"))
    if any(k.startswith("failpoint") for k in kinds):
        handles.append(Line2D([], [], color=FAILPOINT, marker="D", lw=2, label="failpoint"))
    for kind, (color, label) in BANDS.items():
        if kind in kinds:
            handles.append(Patch(facecolor=color, alpha=0.4, label=label))
    if "server-crash" in kinds:
        handles.append(Patch(facecolor=SERVER, alpha=0.3, label="server down"))
    for kind in sorted(k for k in kinds if _fault_color(k) == OTHER):
        band = any(_shape(m) == "band" for m in view.marks if m.kind == kind)
        handles.append(Patch(facecolor=OTHER, alpha=0.4, label=kind) if band
                       else Line2D([], [], color=OTHER, marker="X", lw=2, label=kind))  # fmt: skip
    handles.append(Line2D([], [], color="#888888", marker=">", lw=0, label="submitted"))
    handles.append(Line2D([], [], color="#111111", marker="o", markerfacecolor="white", lw=0, label="done"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles) if len(handles) <= 9 else -(-len(handles) // 2), fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.55, (BOTTOM_IN - 0.6) / height), handlelength=1.8, columnspacing=1.4)  # fmt: skip
    return fig


def png(view: RunView) -> bytes | None:
    fig = draw(view)
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.12)
    return buf.getvalue()
