"""`python -m bench.report [results_dir] [--out DIR]`: the PNG + HTML report of a results tree.

Reads every complete run with `bench.store.load`, computes the tables with pandas (the numbers
behind every sentence), draws seaborn/matplotlib PNGs and renders one static page from
`templates/report.html.j2` (no network, no scripts: it opens from file://). Each preset, in story
order, opens with its verdict, the one figure that shows it and a head-to-head table (headline.py,
from the answers); everything else about it is folded in a <details>, compared within each knob value:

    answer         the question in full and the answer's sentences
    scores         the loss x metric matrix: every test metric of the task per configuration
    significance   each configuration vs the canonical pairing, paired by seed, Holm (forest plot + table)
    knobs          the test metric, epochs to target (and output gradient) against a numeric knob
    robustness     label noise: clean test metric and memorisation gap against the noise level
    heatmaps       final test metric over loss x activation, one scale per metric
    pitfall        categorical vs element-wise accuracy for sigmoid+BCE on multiclass data
    findings       generated sentences with numbers and 95 % intervals
    ranking        final test metric per dataset: mean and t interval over seeds, speed, status
    tuning         tuned runs: validation metric against learning rate, grid-edge warnings
    curves         val metric vs epoch, every configuration of a dataset and setting on one set of axes
    speed          epochs to target (box + points), performance profiles over at least 5 problems
    saturation     output-gradient magnitude vs epoch (outputs that can saturate)

then what was trained (setup.py) and an appendix with the loss anatomy, once. Seeds are the
replication unit: every interval is over seeds. Tables are also written as CSV (ranking.csv,
significance.csv) and the findings as findings.txt beside index.html.

    tables.py     the numbers (light: `python -m bench.results` imports it)
    tuned.py      the tuned view's numbers: per learning rate, the fixed-learning-rate ranking
    answers.py    the per-preset answers that open findings.txt and the page
    headline.py   each preset's verdict and head-to-head table, the story order
    scorecard.py  the loss x metric matrix
    setup.py      what was trained, from the runs' own files
    findings.py   the sentences
    figures/      one module per kind of figure; figures/style.py the colour per loss, dash per activation
    page.py       the sections, the figure painter and the page; build()
    __main__.py   the command line

`python -m bench.report --benchmark [--runs 1000]` times the build on generated results
(bench.perf_report).
"""
from bench.report.tables import prepare, ranking, significance

__all__ = ["prepare", "ranking", "significance"]
