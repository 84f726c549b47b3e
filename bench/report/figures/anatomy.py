"""Loss anatomy: the loss and dloss/dz against the logit for each trained (activation, loss) pair,
targets 0 and 1 (from bench.heads.anatomy). Analytic, the same for every dataset: the page draws it
once, in its appendix. The targets are told apart in greys (no colour: a colour means a loss)."""
import math

import numpy as np

from bench.report.figures import grid, legend, save

COLOURS = {0.0: "0.6", 1.0: "0.1"}


def curves(pairs):
    """[(loss, activation, target, {"z", "loss", "grad"})] for (loss, activation) pairs, and notes on
    what could not be drawn (an invalid pair or target: said instead of failing the report)."""
    from bench.heads import anatomy

    out, notes = [], []
    for loss, activation in pairs:
        for target in (0.0, 1.0):
            try:
                a = anatomy(loss, activation, target)
            except Exception as error:
                notes.append(f"{activation}+{loss}, target {int(target)}: {error}")
                continue
            out.append((loss, activation, target, {k: np.asarray(a[k], dtype=float) for k in ("z", "loss", "grad")}))
    return out, notes


def draw(found, out, name) -> str | None:
    """Columns = (activation, loss) pairs, five to a block; rows = loss and dloss/dz; colour = target.
    Plain lines: nothing to aggregate or facet by data, so no seaborn here."""
    from matplotlib.lines import Line2D

    if not found:
        return None
    pairs = sorted({(a, l) for l, a, _, _ in found})
    cols = min(5, len(pairs))
    blocks = math.ceil(len(pairs) / cols)
    fig, axes, anchor = grid(2 * blocks, cols, panel=(2.9, 2.0), left=0.9, right=1.8, hgap=0.95, top=1.0,
                             title="Loss anatomy: the loss and its gradient against the logit, one output unit")
    place = {p: (2 * (k // cols), k % cols) for k, p in enumerate(pairs)}
    for k in range(len(pairs), blocks * cols):
        axes[2 * (k // cols), k % cols].set_visible(False)
        axes[2 * (k // cols) + 1, k % cols].set_visible(False)
    for loss, activation, target, a in found:
        r, c = place[(activation, loss)]
        top, bottom = axes[r, c], axes[r + 1, c]
        top.plot(a["z"], a["loss"], color=COLOURS.get(target, "0.35"), lw=1.6)
        bottom.plot(a["z"], a["grad"], color=COLOURS.get(target, "0.35"), lw=1.6)
        top.set_title(f"{activation} + {loss}", fontsize=10)
        top.set_ylabel("loss" if c == 0 else "")
        bottom.set_ylabel("∂loss/∂z" if c == 0 else "")
        bottom.set_xlabel("logit z (output pre-activation)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.axhline(0, color="0.6", lw=0.6)
    handles = [Line2D([], [], color=c, lw=2, label=f"y = {int(t)}") for t, c in COLOURS.items()]
    legend(fig, handles, anchor, title="target (grey level)")
    return save(fig, out, name)
