"""How one adjusted comparison (a `bench.stats.adjust` result) is said, in the same words in the
answers, the findings, the tables and `bench.results`: its estimate, its interval with the level it
has, its family and its verdict.

    amount(c)        '+0.0123' (a difference) or 'at least 3.1×' (a ratio, with its bound)
    interval(c)      '99.5 % CI -0.0040 to 0.0286', '98.3 % CI 0.91–1.71×'
    evidence(c)      '99.5 % CI ...; Holm-adjusted p = 0.21 over 11 comparisons, 5 paired replicates'
    verdict(c, a, b) 'a is not distinguishable from b (...)'
    VERDICT_WORDS, SPEED_WORDS   a verdict in a word or two ('not distinguishable'; 'faster')
    RULE             the statistics rule, stated once on the page

>>> c = {"scale": "ratio", "estimate": 1.25, "lo": 0.91, "hi": 1.71, "level": 0.98333, "p": 0.04,
...      "p_holm": 0.13, "family_size": 3, "n": 5, "verdict": "tie", "note": ""}
>>> amount(c), interval(c)
('1.25×', '98.3 % CI 0.910–1.71×')
"""
import math

from bench.report.tables import fmt, fmt_ci

RULE = ("Every comparison pairs replicates (the same seed: the same split, initialisation and batch order) and "
        "is a t interval on the paired differences, or on the paired log ratios for positive quantities "
        "(errors, times), valid at 5 replicates. A family is the comparisons of one dataset at one setting "
        "against one reference on one quantity; its p-values are Holm-adjusted (family-wise α = 0.05), and each "
        "interval has the level Holm tested it at, so it excludes no difference exactly when the verdict is "
        "better or worse. A best of N is selected after the fact and is said so; a difference smaller than one "
        "test example per replicate is a tie; a time to target never reached counts at the training budget, so "
        "its ratio is a bound ('at least').")

BOUND_WORDS = {"exact": "", "at least": "at least ", "at most": "at most ", "capped": "capped "}
# a verdict as one word or two; SPEED_WORDS for a time to target (fewer epochs is better)
VERDICT_WORDS = {"better": "better", "worse": "worse", "higher": "higher", "lower": "lower",
                 "tie": "not distinguishable", "n/a": "not comparable"}
SPEED_WORDS = {**VERDICT_WORDS, "better": "faster", "worse": "slower"}


def level_words(level) -> str:
    """95, 97.5, 98.3, 99.5, 99.95: the level in percent with the digits that keep it below 100."""
    for digits in range(3, 8):
        text = f"{100 * level:.{digits}g}"
        if float(text) < 100:
            return text
    return f"{100 * level:.7g}"


def amount(c, digits=3) -> str:
    """The estimate: a signed difference, or a ratio with '×' and its bound ('at least 3.1×')."""
    if c["scale"] == "ratio":
        return f"{BOUND_WORDS[c.get('bound', 'exact')]}{fmt(c['estimate'], digits)}×"
    if math.isnan(c["estimate"]):
        return "n/a"
    return ("+" if c["estimate"] > 0 else "") + fmt(c["estimate"], digits)


def interval(c, digits=3) -> str:
    """The interval with its level ('n/a' below 2 pairs)."""
    unit = "×" if c["scale"] == "ratio" else ""
    capped = " of the capped ratio" if c.get("bound", "exact") != "exact" else ""
    text = fmt_ci(c["lo"], c["hi"], digits)
    return f"{level_words(c['level'])} % CI{capped} {text}{unit if text != 'n/a' else ''}"


def adjusted(c) -> str:
    """'Holm-adjusted p = 0.21 over 11 comparisons', or 'p = 0.03' for a family of one."""
    if c["family_size"] > 1:
        return f"Holm-adjusted p = {fmt(c['p_holm'], 2)} over {c['family_size']} comparisons"
    return f"p = {fmt(c['p'], 2)}"


def evidence(c) -> str:
    """Interval, adjusted p and the pairs behind them, for parentheses."""
    return f"{interval(c)}; {adjusted(c)}, {c['n']} paired replicates"


def verdict(c, alternative, reference) -> str:
    """The verdict in words, naming what the family and the resolution rule made of it."""
    said = {"better": f"{alternative} is better than {reference}", "worse": f"{alternative} is worse than {reference}",
            "higher": f"{alternative} is higher than {reference}", "lower": f"{alternative} is lower than {reference}",
            "tie": f"{alternative} is not distinguishable from {reference}",
            "n/a": f"{alternative} and {reference} cannot be compared"}[c["verdict"]]
    if c["verdict"] == "tie" and c["note"]:
        return f"{said}: {c['note']}"
    if c["verdict"] == "tie" and c["family_size"] > 1:
        return f"{said} after correction for {c['family_size']} comparisons"
    return f"{said} ({c['note']})" if c["note"] else said
