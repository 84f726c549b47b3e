"""`python -m bench.report [results_dir] [--out DIR]`: the PNG + HTML report of a results tree.

Reads every complete run with `bench.store.load`, computes the tables with pandas (the numbers
behind every sentence), draws seaborn PNGs and renders one static page from
`templates/report.html.j2` (no network, no scripts: it opens from file://). The page opens with the
answers: per preset, its question (conf/sweep/<group>.yaml) and the comparison it implies with
effect sizes and intervals (answers.py). Per sweep group, compared within each knob value:

    findings       generated sentences with numbers and 95 % intervals
    ranking        final test metric per dataset: mean and t interval over seeds, speed, status
    curves         val metric vs epoch and vs training seconds, mean and 95 % band over seeds
    heatmaps       final test metric over loss x activation
    speed          epochs to target (box + strip), performance profiles across datasets
    saturation     output-gradient magnitude vs epoch
    anatomy        loss and dloss/dz against the logit (bench.heads.anatomy), targets 0 and 1
    pitfall        categorical vs element-wise accuracy for sigmoid+BCE on multiclass data
    significance   each configuration vs the dataset's canonical pairing, paired by seed, Holm
    sensitivity    tuned runs: validation metric against learning rate, robustness, grid-edge warnings

Seeds are the replication unit: every interval is over seeds. Tables are also written as CSV
(ranking.csv, significance.csv) and the findings as findings.txt beside index.html.

    tables.py     the numbers (light: `python -m bench.results` imports it)
    tuned.py      the tuned view's numbers: per learning rate, the fixed-learning-rate ranking
    answers.py    the per-preset answers that open the page and findings.txt
    findings.py   the sentences
    figures/      one module per kind of figure (seaborn, imported when drawing)
    page.py       the sections, the figure painter and the page; build()
    __main__.py   the command line

`python -m bench.report --benchmark [--runs 1000]` times the build on generated results
(bench.perf_report).
"""
from bench.report.tables import prepare, ranking, significance

__all__ = ["prepare", "ranking", "significance"]
