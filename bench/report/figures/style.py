"""The report's one visual vocabulary: a colour per loss and a line style per output activation, the
same in every figure (DeepOBS-style: a reader learns it once). Greys and black never mean a loss:
they are kept for references (targets, zero lines, a baseline), so every colour on the page is a loss.

    colour(loss)              the loss's colour (hex)
    linestyle(activation)     the activation's dash pattern (a matplotlib linestyle)
    marker(activation)        its marker shape, where a configuration is a point without a line
    tag(artist, losses, activations)   name what an artist draws, in its gid (read back by `drawn`)
    drawn(fig)                what a figure really drew: {"losses": {loss: [hex]}, "activations":
                              {activation: [dash]}, "untagged": [hex], "scales": [...], "colorbars": n,
                              "panels": [title]}, from its artists

`figures.save` writes `drawn(fig)` into the PNG's metadata (key "lossbench"), so a test reads each
image's colours from the image file, not from this module's tables.
"""
import json
import zlib

# a colour per loss label the report shows (bench.losses.Loss.label, bench.report.tables.loss_labels): the
# built-in losses at their defaults and the variants the shipped sweeps compare side by side (demand's two
# pinball levels, calibration's smoothing and focusing settings), no two of them nearly alike
# (tests/test_reader.py holds every pair apart);
# any other label (a custom loss, another parameter) gets one of EXTRA by a hash of its name: the same
# colour in every figure and report, and none of EXTRA is near a listed colour either
LOSS_COLOURS = {
    "mse": "#1f77b4", "bce": "#ff7f0e", "cce": "#2ca02c", "mae": "#d62728", "huber": "#9467bd",
    "log_cosh": "#8c564b", "mape": "#e377c2", "hinge": "#bcbd22", "poisson": "#17becf", "focal": "#e6ab02",
    "msle": "#1b9e77", "kl_div": "#9400d3", "squared_hinge": "#66a61e", "gce": "#a6761d", "sce": "#e7298a",
    "poly1": "#0b3d91", "nce_rce": "#8b0000", "tweedie(1.5)": "#800080", "pinball(0.5)": "#006400",
    "pinball(0.9)": "#ff00ff", "categorical_focal": "#cd5c5c", "categorical_focal(gamma=1)": "#ff0000",
    "categorical_focal(gamma=2)": "#6a3d9a", "flsd53": "#556b2f", "cce(label_smoothing=0.05)": "#1e90ff",
    "cce(label_smoothing=0.1)": "#7b68ee",
}
EXTRA = ["#fb9a99", "#fdbf6f", "#cab2d6", "#b2df8a", "#000080", "#80b1d3"]
# one dash pattern per output activation (matplotlib linestyles); an unknown activation gets OTHER_STYLE
ACTIVATION_STYLES = {"linear": "-", "sigmoid": "--", "softmax": "-.", "tanh": ":",
                     "softplus": (0, (6, 1.5, 1, 1.5, 1, 1.5)), "exp": (0, (1, 1))}
OTHER_STYLE = (0, (4, 1.5, 1, 1.5))
ACTIVATION_MARKERS = {"linear": "o", "sigmoid": "s", "softmax": "D", "tanh": "^", "softplus": "v", "exp": "P"}
REFERENCE = "0.15"  # references (targets, zero lines): near-black, never a loss


def colour(loss) -> str:
    loss = str(loss)
    if loss in LOSS_COLOURS:
        return LOSS_COLOURS[loss]
    return EXTRA[zlib.crc32(loss.encode()) % len(EXTRA)]


def linestyle(activation):
    return ACTIVATION_STYLES.get(str(activation), OTHER_STYLE)


def marker(activation) -> str:
    return ACTIVATION_MARKERS.get(str(activation), "X")


def tag(artist, losses=None, activations=None):
    """Name the losses (and activations) an artist draws, one per element (line, point, patch) or one
    for all; `drawn` pairs them with the colours (and dashes) the artist really has."""
    def names(v):
        return [] if v is None else [str(v)] if isinstance(v, str) else [str(x) for x in v]

    artist.set_gid(json.dumps({"losses": names(losses), "activations": names(activations)}))
    return artist


def _hex(rgba) -> str | None:
    """'#rrggbb' of a visible colour; None for a transparent one."""
    r, g, b, *a = (float(c) for c in rgba)
    if a and a[0] == 0:
        return None
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (r, g, b)))


def is_grey(hex_colour) -> bool:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return max(r, g, b) - min(r, g, b) <= 6


def _colours(artist) -> list:
    """The colours an artist paints, one entry per element (a line, a point, a patch)."""
    from matplotlib.collections import Collection
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if isinstance(artist, Line2D):
        out = [artist.get_color()] if artist.get_linestyle() not in ("None", "none", "", " ") else []
        if artist.get_marker() not in (None, "None", "none", "", " "):
            filled = artist._marker.is_filled() and artist.get_fillstyle() != "none"  # '_' or '|' paint no face
            out += [*([artist.get_markerfacecolor()] if filled else []), artist.get_markeredgecolor()]
        return [[to_rgba(c, artist.get_alpha()) for c in out if c not in ("none", "None")]]
    if isinstance(artist, Collection):
        faces, edges = artist.get_facecolor(), artist.get_edgecolor()
        if isinstance(edges, str):
            edges = []
        widths = artist.get_linewidth()
        n = max(len(faces), len(edges), 1)
        rows = []
        for i in range(n):
            row = [faces[i % len(faces)]] if len(faces) else []
            width = widths[i % len(widths)] if len(widths) else 0
            if len(edges) and width > 0:
                row.append(edges[i % len(edges)])
            rows.append(row)
        return rows
    if isinstance(artist, Patch):
        row = [artist.get_facecolor()] if artist.get_fill() else []
        if artist.get_linewidth() > 0:
            row.append(artist.get_edgecolor())
        return [row]
    return []


def _dashes(artist) -> list:
    """The unscaled dash pattern of each line an artist draws ('solid' for none)."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    if isinstance(artist, Line2D):
        if artist.get_linestyle() in ("None", "none", "", " "):
            return []
        patterns = [artist._unscaled_dash_pattern]
    elif isinstance(artist, LineCollection):
        patterns = artist._us_linestyles
    else:
        return []
    return ["solid" if seq is None else " ".join(f"{float(x):g}" for x in seq) for _, seq in patterns]


def drawn(fig) -> dict:
    """What `fig` drew, read from its artists (legends included): per loss the colours of the artists
    tagged with it, per activation their dash patterns, the non-grey colours of untagged artists (a
    colour that means no loss), and per colour-mapped image its metric, limits and colormap."""
    from matplotlib.collections import Collection
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    losses, activations, untagged, scales = {}, {}, set(), []
    # what the panels and legends draw (not ticks, spines or backgrounds: greys; a colorbar paints its map)
    shown = [ax for ax in fig.axes if ax.get_visible() and getattr(ax, "_colorbar", None) is None]
    artists = [a for ax in shown for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images)]
    artists += [h for leg in (*fig.legends, *(ax.get_legend() for ax in shown)) if leg is not None
                for h in leg.legend_handles if h is not None]
    for artist in artists:
        if not artist.get_visible():
            continue
        if isinstance(artist, AxesImage):
            norm = artist.norm
            scales.append({"gid": artist.get_gid(), "vmin": float(norm.vmin), "vmax": float(norm.vmax),
                           "cmap": artist.get_cmap().name})
            continue
        if not isinstance(artist, (Line2D, Collection, Patch)):
            continue
        gid = artist.get_gid()
        named = json.loads(gid) if gid and gid.startswith("{") else None
        for i, row in enumerate(_colours(artist)):
            colours = {h for h in map(_hex, row) if h and not is_grey(h)}
            if not colours:
                continue
            if named and named["losses"]:
                loss = named["losses"][i if len(named["losses"]) > 1 else 0]
                losses.setdefault(loss, set()).update(colours)
            else:
                untagged.update(colours)
        if named and named["activations"]:
            for i, dash in enumerate(_dashes(artist)):
                act = named["activations"][i if len(named["activations"]) > 1 else 0]
                activations.setdefault(act, set()).add(dash)
    colorbars = sum(getattr(ax, "_colorbar", None) is not None for ax in fig.axes)
    panels = [ax.get_title() for ax in fig.axes if ax.get_visible() and getattr(ax, "_colorbar", None) is None]
    return {"losses": {k: sorted(v) for k, v in sorted(losses.items())},
            "activations": {k: sorted(v) for k, v in sorted(activations.items())},
            "untagged": sorted(untagged), "scales": scales, "colorbars": colorbars, "panels": panels}
