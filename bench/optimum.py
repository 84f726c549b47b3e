"""The exact optimum of each loss on generated data: the functional of the conditional distribution of
y given x that the loss's minimiser is (Gneiting, JASA 2011), computed per row from the distribution
the generator drew that row from.

    law = conditional_law(data.conditional, r, rows)   the laws of some rows of replicate r
    functional(law, "quantile", 0.9)                   [N]: one functional of every row's law
    best = Optimum(head, law)                          the optimum of the head's loss on those rows
    best.figures(head, z, target_scale, y)             per member: its forecasts against it

bench.run computes one Optimum per replicate, on its own test rows, for the members of that replicate.

The functionals (`Loss.elicits` in bench.losses): the mean (MSE, Poisson, Tweedie), the median (MAE),
the tau-quantile (pinball at each level), the beta-median with beta = -1 (MAPE: the median of the density
proportional to f(y) / y). Every one is a weighted quantile, inf{b : E[Y^r; Y <= b] >= level E[Y^r]}
(r = 0: the quantile at `level`; r = beta, level 1/2: the beta-median), and the mean is E[Y].

Two laws, one interface (`functional`):
- `LogLocation`: Y = exp(mu + W), W from a law shared by many rows (the log-normal shock of the demand
  generator, W ~ N(0, sigma^2)). Every functional above is scale-equivariant, T(c Y) = c T(Y), so it is
  exp(mu) times the functional of exp(W), computed once per distinct shock law: partial moments
  E[e^{rW}; W <= b] by adaptive quadrature (scipy.integrate.quad) and the weighted quantile by root
  finding (scipy.optimize.brentq), both to ~1e-12 (tests: the log-normal closed forms, 1e-6 relative).
- `Sampled`: any law that can be drawn from (the zero-truncated Poisson counts of a log-normal rate):
  the functionals of SAMPLES draws per row (a fixed seed), the weighted sample quantile being the law's
  own definition for a discrete law (inf{b : F(b) >= level}); the standard error of a row's mean is
  sd / sqrt(SAMPLES) (about 0.3 % of it at the demand preset's noise), and of a mean over rows less.
"""
import math
from dataclasses import dataclass

import numpy as np

SAMPLES = 10_000  # draws per row for a `Sampled` law
BETA = {"beta_median": -1.0}  # the beta of each beta-median a loss elicits (MAPE's: beta = -1)
SEED = 0x0971  # the draws of `Sampled` laws: the same data give the same optimum


# ---------------------------------------------------------------------------------------------
# laws: the conditional distributions of one split's rows

@dataclass(frozen=True)
class LogLocation:
    """Y_i = exp(mu_i + W_i), W_i ~ N(0, sigma_i^2): per row [N] arrays."""

    mu: np.ndarray
    sigma: np.ndarray

    def shock_functional(self, sigma, r, level) -> float:
        """log T(exp(W)) for W ~ N(0, sigma^2): the weighted quantile (r, level), or the mean if level is None."""
        from scipy import integrate, optimize

        if sigma == 0:  # a point mass at exp(0)
            return 0.0
        density = lambda w: math.exp(r * w - 0.5 * (w / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))  # noqa: E731
        centre, width = r * sigma**2, 40 * sigma  # the weighted density is N(r sigma^2, sigma^2) in shape
        lo, hi = centre - width, centre + width  # beyond: below 1e-300 of the mass

        def below(b):  # E[e^{rW}; W <= b]
            return integrate.quad(density, lo, b, epsabs=0, epsrel=1e-13, limit=200,
                                  points=[centre] if lo < centre < b else None)[0]

        total = below(hi)
        if level is None:  # the mean: E[e^W] = the total mass at r = 1
            return math.log(total)
        return optimize.brentq(lambda b: below(b) - level * total, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps)


@dataclass(frozen=True)
class Sampled:
    """Y_i | L_i ~ Poisson(L_i) given Y_i >= 1 (zero-truncated), log L_i ~ N(mu_i, sigma_i^2), as the demand
    generator draws its counts."""

    mu: np.ndarray
    sigma: np.ndarray

    def draws(self, rows, rng) -> np.ndarray:
        """[len(rows), SAMPLES] draws of those rows, sorted along each row."""
        rate = np.exp(self.mu[rows, None] + self.sigma[rows, None] * rng.standard_normal((len(rows), SAMPLES)))
        y = rng.poisson(rate)
        while (zero := y == 0).any():  # zero-truncated: redraw the zeros at their own rate, as the generator does
            y[zero] = rng.poisson(rate[zero])
        return np.sort(y.astype(np.float64), axis=1)


FAMILIES = {"lognormal": LogLocation, "poisson_lognormal": Sampled}


def conditional_law(conditional, replicate, rows):
    """The law of some rows of one replicate from `Data.conditional` ({"family", name: [R, B]}): rows [n]."""
    return FAMILIES[conditional["family"]](**{k: np.asarray(v[replicate][rows], dtype=np.float64)
                                              for k, v in conditional.items() if k != "family"})


# ---------------------------------------------------------------------------------------------
# functionals

def _weighted_quantile(draws, r, level) -> np.ndarray:
    """Per row of sorted positive draws [R, M]: the smallest draw b with sum_{y <= b} y^r >= level sum y^r."""
    weight = np.cumsum(draws**r, axis=1)  # [R, M]
    index = (weight < level * weight[:, -1:]).sum(1)  # the first position reaching the level
    return draws[np.arange(len(draws)), np.minimum(index, draws.shape[1] - 1)]


def functional(law, kind, level=0.5) -> np.ndarray:
    """One functional of every row's law [N]: kind mean | median | quantile (at `level`) | beta_median."""
    r, at = {"mean": (1.0, None), "median": (0.0, 0.5), "quantile": (0.0, level)}.get(kind, (BETA.get(kind), 0.5))
    if r is None:
        raise ValueError(f"kind={kind!r}: choose mean, median, quantile or beta_median")
    if isinstance(law, LogLocation):
        out = np.empty(len(law.mu))
        for sigma in np.unique(law.sigma):  # once per distinct shock law
            rows = law.sigma == sigma
            out[rows] = np.exp(law.mu[rows] + law.shock_functional(float(sigma), r, at))
        return out
    rng = np.random.default_rng(SEED)  # the same draws for every functional of one law
    chunks = []
    for start in range(0, len(law.mu), 64):  # 64 rows x SAMPLES draws at a time
        draws = law.draws(np.arange(start, min(start + 64, len(law.mu))), rng)
        chunks.append(draws.mean(1) if at is None else _weighted_quantile(draws, r, at))
    return np.concatenate(chunks)


# ---------------------------------------------------------------------------------------------
# a head's optimum and its forecasts against it

class Optimum:
    """The exact optimum of one head's loss on the rows of `law`, per row and level [N, L], beside the
    conditional mean [N]: computed once per replicate, shared by its members (learning rates). A loss whose
    optimum is no simple functional (Huber: `elicits` None) has nothing to compare."""

    def __init__(self, head, law):
        from bench.losses import LOSSES

        self.kind = LOSSES[head.loss].elicits
        self.levels = head.quantiles or (0.5,)
        if self.kind is None:
            self.best = None
            return
        if head.n_targets != 1:
            raise ValueError("the exact optimum is known for one generated target")
        self.mean = functional(law, "mean")
        self.best = np.stack([functional(law, self.kind, tau) for tau in self.levels], -1)  # [N, L]
        self.point = head.point_level if head.quantiles else 0

    def figures(self, head, z, target_scale, y) -> dict:
        """One member's forecasts (raw outputs z [N, O]) against the optimum on these rows: forecast_vs_optimum
        (the sum of its forecasts over the sum of the optima: the ratio of their means), forecast_vs_mean
        (over the conditional means) and optimum_vs_mean, of its point forecast; a quantile head adds the
        three per level (`_<tau>` keys) and coverage_optimum_<tau>, the share of the targets y [N, 1]
        (stored units) at or below the exact quantile: the coverage a perfect forecast has on this sample."""
        import torch

        from bench.forecast import level_name

        if self.best is None:
            return {}
        z = torch.as_tensor(z).detach().cpu().double()
        q = (head.quantile_predictions(z) * target_scale).numpy()[:, 0]  # [N, L]: one target
        truth = np.asarray(y, dtype=np.float64)[:, 0] * target_scale  # [N]
        out = {}
        for i, tau in enumerate(self.levels):
            figures = {"forecast_vs_optimum": q[:, i].sum() / self.best[:, i].sum(),
                       "forecast_vs_mean": q[:, i].sum() / self.mean.sum(),
                       "optimum_vs_mean": self.best[:, i].sum() / self.mean.sum()}
            if i == self.point:
                out.update(figures)
            if head.quantiles:
                figures["coverage_optimum"] = (truth <= self.best[:, i]).mean()
                out.update({level_name(k, tau): v for k, v in figures.items()})
        return {k: float(v) for k, v in out.items()}
