"""Robustness to label noise: the clean test metric against the share of wrong training labels, one
line per configuration (colour = loss, dashes = activation; band = the t interval over replicates),
and the memorisation gap, the best epoch's clean validation metric minus the last epoch's (validation
labels stay clean: bench.datasets).

    frame = robustness_frame(runs, history)   one row per (run, seed): noise, loss, test, best, last, gap
    draw(frame, out, name)                    rows = datasets; columns = test metric, gap
"""
import numpy as np
import pandas as pd

from bench import stats
from bench.report.figures import axis_label, config_handles, grid, legend, lines_with_bands, save, style

COLUMNS = ["group", "dataset", "task", "metric", "higher_is_better", "noise", "applied", "pair", "activation", "loss",
           "lr", "seed", "test", "best", "last", "gap"]


def robustness_frame(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per (run, seed) of a group whose runs differ in dataset.label_noise: the clean test metric at the
    last epoch, the best and last clean validation metric, and gap = best - last (>= 0 when higher is
    better; the sign is flipped for a lower-is-better metric); lr, the run's (chosen) learning rate. A
    diverged seed keeps NaN values. Tuned runs: pass the chosen rows and their members' history only
    (bench.report.page.chosen_history), one (seed, lr) member per seed."""
    if runs.empty or "label_noise" not in runs or history.empty:
        return pd.DataFrame(columns=COLUMNS)
    r = runs[runs["trained"] & runs["task"].isin(["binary", "multiclass"])].copy()
    r["noise"] = pd.to_numeric(r["label_noise"], errors="coerce")
    r = r[r.groupby("group")["noise"].transform("nunique") > 1]
    if r.empty:
        return pd.DataFrame(columns=COLUMNS)
    val = history[(history["split"] == "val") & history["run_id"].isin(r["run_id"])]
    last_epoch = val.groupby(["run_id", "seed"])["epoch"].transform("max")
    rows = []
    for (rid, seed), h in val[val["epoch"] == last_epoch].groupby(["run_id", "seed"]):
        rows.append({"run_id": rid, "seed": seed, "last_row": h.index[0]})
    last = pd.DataFrame(rows, columns=["run_id", "seed", "last_row"])
    out = r.merge(last, on=["run_id", "seed"], how="left")
    out["last"] = [val.at[i, m] if pd.notna(i) and m in val else np.nan for i, m in zip(out["last_row"], out["metric"])]
    out["test"] = out.apply(lambda row: row.get(f"test_{row['metric']}", np.nan), axis=1)
    out["best"] = pd.to_numeric(out["best_val"], errors="coerce")
    sign = np.where(out["higher_is_better"].astype(bool), 1.0, -1.0)
    out["gap"] = sign * (out["best"] - pd.to_numeric(out["last"], errors="coerce"))
    out["pair"] = out["activation"].astype(str) + "+" + out["loss"].astype(str)
    out["applied"] = pd.to_numeric(out["label_noise_applied"], errors="coerce")
    out["lr"] = pd.to_numeric(out["lr"], errors="coerce") if "lr" in out else np.nan
    return out[COLUMNS].astype({"test": float, "best": float, "last": float, "gap": float})


def draw(frame: pd.DataFrame, out, name) -> str | None:
    if frame.empty:
        return None
    datasets = sorted(frame["dataset"].unique())
    fig, axes, anchor = grid(len(datasets), 2, panel=(3.0, 2.2), left=0.9, wgap=0.9, hgap=0.95,
                             title="Label noise: clean test metric and memorisation gap (95 % band)",
                             below=frame["loss"].nunique() + frame["activation"].nunique())
    for row, dataset in zip(axes, datasets):
        d = frame[frame["dataset"] == dataset]
        metric = d["metric"].iloc[0]
        for ax, column, ylabel in ((row[0], "test", axis_label(metric, "clean test")),
                                   (row[1], "gap", f"best − last epoch, clean val {metric}")):
            band = stats.band(d, ["activation", "loss", "noise"], column)
            lines_with_bands(ax, band, "noise", metric=metric if column == "test" else None)
            ax.set_xticks(sorted(d["noise"].unique()))
            ax.set_xlabel("share of training labels replaced (symmetric)")
            ax.set_ylabel(ylabel)
            ax.set_title(dataset, fontsize=10)
            ax.grid(alpha=0.3)
        row[1].axhline(0, color=style.REFERENCE, lw=0.8)
    legend(fig, config_handles(frame), anchor, title="loss (colour), output (dashes)")
    return save(fig, out, name)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (group, dataset, noise, pair): mean and t interval over seeds of test, best, last and gap, and
    the learning rate (lr: the chosen one when tuned)."""
    parts = []
    for column in ("test", "best", "last", "gap"):
        b = stats.band(frame, ["group", "dataset", "task", "metric", "noise", "pair"], column)
        parts.append(b.rename(columns={"mean": column, "lo": f"{column}_lo", "hi": f"{column}_hi", "n": f"{column}_n"}))
    out = parts[0]
    for p in parts[1:]:
        out = out.merge(p, on=["group", "dataset", "task", "metric", "noise", "pair"])
    keys = ["group", "dataset", "task", "metric", "noise", "pair"]
    out = out.merge(frame.groupby(keys, sort=False)["lr"].first().reset_index(), on=keys)
    return out.sort_values(["group", "dataset", "noise", "test"], ascending=[True, True, True, False])
