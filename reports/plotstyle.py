"""One style rule for every figure with several lines (the study pages' curves, the basket's, the resampled
proposal's): every line gets its own (colour, line style) pair, so no two estimators look alike however many a
figure holds, and the legend sits outside the axes (to their right), so it never covers data or axis labels.

:func:`line_styles` assigns the pairs: labels in order take the colours of ``tab10`` in turn; a label's line style
is its group's (``groups``: e.g. the paper's estimators solid, those published since dashed), moved on to the next
style wherever that (colour, style) pair is already taken.  Up to ``len(COLOURS) × len(LINESTYLES)`` (60) labels
get pairwise distinct pairs; beyond that pairs repeat (and a figure that busy wants facets).
:func:`legend_outside` puts one figure legend to the right of every axes; :func:`save` writes the PNG with the
legend inside the image and closes the figure (tests replace it to inspect the figure).
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

#: matplotlib's tab10, in order
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
#: solid, dashed, dotted, dash-dot, long dash, dash-dot-dot
LINESTYLES = ("-", (0, (4, 2)), (0, (1, 1.5)), (0, (5, 1.5, 1, 1.5)), (0, (9, 3)), (0, (5, 1.5, 1, 1.5, 1, 1.5)))


def line_styles(labels: Sequence[str], groups: Optional[Dict[str, int]] = None) -> Dict[str, dict]:
    """label → ``{"color": …, "linestyle": …}`` (keyword arguments of ``Axes.plot``), pairwise distinct for up to
    60 labels.  ``groups``: label → group number (0 first); a group's lines share a line style where they can."""
    out: Dict[str, dict] = {}
    used = set()
    labels = list(dict.fromkeys(labels))
    for i, label in enumerate(labels):
        colour = i % len(COLOURS)
        style = (groups or {}).get(label, 0) % len(LINESTYLES)
        for step in range(len(LINESTYLES)):
            s = (style + step) % len(LINESTYLES)
            if (colour, s) not in used:
                style = s
                break
        used.add((colour, style))
        out[label] = {"color": COLOURS[colour], "linestyle": LINESTYLES[style]}
    return out


def legend_outside(fig, handles: Iterable, names: Iterable[str], *, title: Optional[str] = None, fontsize: float = 8,
                   ncol: int = 1):
    """One legend for the whole figure, to the right of every axes (anchored at the figure's right edge; :func:`save`
    widens the image to hold it).  Returns the Legend."""
    handles, names = list(handles), list(names)
    if not handles:
        return None
    return fig.legend(handles, names, loc="upper left", bbox_to_anchor=(1.0, 0.98), bbox_transform=fig.transFigure,
                      frameon=False, fontsize=fontsize, title=title, title_fontsize=fontsize, ncol=ncol,
                      handlelength=3.0)


def unique_handles(axes) -> tuple:
    """(handles, names) of every labelled artist in ``axes``, each name once, in first-seen order."""
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names and not n.startswith("_"):
                handles.append(h)
                names.append(n)
    return handles, names


def compact_iterations(ax, ticks: int = 5) -> None:
    """At most ``ticks`` iteration ticks on the x axis, thousands written ``20k`` (long runs' labels run together)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(ticks, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 10_000 else f"{v:g}"))


def save(fig, path: str, dpi: int = 100) -> str:
    """Write ``fig`` to ``path`` (the bounding box grown to hold a legend outside the axes) and close it."""
    import matplotlib.pyplot as plt
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


__all__ = ["COLOURS", "LINESTYLES", "line_styles", "legend_outside", "unique_handles", "compact_iterations", "save"]
