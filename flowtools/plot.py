"""Charts of tool results as PNG files (pyflow-stats --plot; pyflow-count adds its own).

matplotlib is an optional extra (``pip install 'pyflow[plot]'``): it is imported only when a
chart is drawn, with the non-interactive Agg backend, so that tools start fast and run
without a display; a missing matplotlib is a one-line error.
"""

from .errors import FlowError

UNITS = {"Records": "flow records", "Packets": "packets", "Bytes": "bytes"}


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a FlowError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise FlowError("--plot needs matplotlib, which is not installed "
                        "(pip install 'pyflow[plot]')") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def save(fig, path):
    """Write the figure to path as PNG (through a temporary name, replaced when done)."""
    import os

    from .io import temp_beside
    try:
        fd, tmp = temp_beside(path, suffix=".png")
    except OSError as exc:
        raise FlowError(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def top_bars(path, labels, values, value_title, key_title):
    """A horizontal bar chart of ranked bins, the first at the top."""
    plt = pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * n + 1.2)))
    try:
        pos = list(range(n))
        ax.barh(pos, values, color="#4878a8")
        ax.set_yticks(pos)
        ax.set_yticklabels(labels, fontsize=8, family="monospace")
        ax.invert_yaxis()
        unit = UNITS.get(value_title, "distinct values" if value_title.endswith("-Distinct")
                         else value_title)
        ax.set_xlabel(f"{value_title} ({unit})")
        ax.set_ylabel(key_title)
        ax.set_title(f"Top {n} {key_title} by {value_title}" if n else "No bins")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        save(fig, path)
    finally:
        plt.close(fig)


# ------------------------------------------------------------------ pyflow-count

def check_available():
    """Fail early, before any input is read, when matplotlib is missing."""
    pyplot()


def _span(seconds):
    """'5 min', 'hour', '2 days'... for a bin size."""
    for unit, size in (("day", 86400), ("hour", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            k = seconds // size
            return unit if k == 1 else f"{k:g} {unit}{'s' if unit != 'min' else ''}"
    return f"{seconds:g} s"


def time_series(path, series, ylabel="records", bin_seconds=30.0, moving_average=None,
                facets=False, local=False, title=None):
    """Lines of per-bin volumes over time: series maps a label to (bin start times in ms,
    values); with facets each series gets its own panel; moving_average=N adds the mean
    over N bins as a dashed line."""
    import datetime

    import numpy as np
    plt = pyplot()
    tz = None if local else datetime.UTC
    items = list(series.items())
    panels = len(items) if facets and items else 1
    fig, axes = plt.subplots(panels, 1, sharex=True, squeeze=False,
                             figsize=(11, 3.6 + 1.6 * (panels - 1)))
    try:
        for k, (label, (times, values)) in enumerate(items):
            ax = axes[k if facets else 0][0]
            when = [datetime.datetime.fromtimestamp(int(t) / 1000, tz) for t in times]
            values = np.asarray(values, np.float64)
            line, = ax.plot(when, values, drawstyle="steps-post", linewidth=1, label=label)
            if moving_average and moving_average > 1 and len(values) >= moving_average:
                kernel = np.ones(int(moving_average)) / moving_average
                avg = np.convolve(values, kernel, mode="valid")
                ax.plot(when[int(moving_average) - 1:], avg, linestyle="--", linewidth=1,
                        color=line.get_color(), label=f"{label}, mean of {moving_average} bins")
        unit = f"{ylabel} per {_span(bin_seconds)}"
        for row in axes:
            ax = row[0]
            ax.set_ylabel(unit)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                # beside the plot, not over the lines
                ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                          borderaxespad=0)
        if title:
            axes[0][0].set_title(title)
        axes[-1][0].set_xlabel("time (" + ("local" if local else "UTC") + ")")
        fig.autofmt_xdate()
        fig.tight_layout()
        save(fig, path)
    finally:
        plt.close(fig)
