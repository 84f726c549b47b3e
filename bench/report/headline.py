"""What opens each preset on the page: its verdict (one sentence) and its head-to-head table (one row
per dataset or setting: the reference, the alternative the question names, both means, the estimate
with its adjusted interval, the adjusted p, better | worse | tie | n/a, and the family in words).

Both come from `answers.answers(...)` (`verdict`, `head_to_head`: the one inference procedure,
bench.stats); this module only lays them out.

    complete(answer)               the answer with `verdict` and `head_to_head`, empty where it has none
    rows_for_page(h2h)             the head-to-head as table rows and its notes
"""
import pandas as pd

from bench.report.answers import HEAD_TO_HEAD
from bench.report.tables import fmt

PAGE_HEADER = ["where", "reference: mean", "alternative: mean", "alternative − reference (interval)", "p (Holm)",
               "verdict"]


def complete(answer, *_) -> dict:
    """The answer with `verdict` and `head_to_head`; a group the answers did not reach gets an empty
    head-to-head and says so."""
    answer = dict(answer)
    if answer.get("head_to_head") is None:
        answer["head_to_head"] = pd.DataFrame(columns=HEAD_TO_HEAD)
    if not answer.get("verdict"):
        answer["verdict"] = ("No head-to-head comparison: the configurations this question compares were not "
                             "both trained.")
    return answer


def rows_for_page(h2h) -> tuple:
    """(rows, notes): the head-to-head as table rows, bold (class "holds") where the difference holds
    after adjustment, the dataset left out of `where` when the preset has one; and the rows' notes (why
    a tie or n/a), 'where: note', for the fold under the table."""
    rows, notes = [], []
    one = h2h["dataset"].nunique() == 1
    for _, r in h2h.iterrows():
        where = r["where"].removeprefix(f"{r['dataset']} · ") if one and r["where"] != r["dataset"] else r["where"]
        rows.append({"cls": "holds" if r["verdict"] in ("better", "worse") else "", "cells": [
            where, f"{r['reference']}: {fmt(r['ref_mean'], 4, pad=True)}",
            f"{r['alternative']}: {fmt(r['alt_mean'], 4, pad=True)}", f"{r['amount']} ({r['interval']})",
            fmt(r["p_holm"], 2), r["verdict"]]})
        if r.get("note"):
            notes.append(f"{where}: {r['note']}")
    return rows, notes
