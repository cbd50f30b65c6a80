"""sdegen: score-based generative modelling with stochastic differential equations.

The score function ``score_fn(x, t, y=None) -> Tensor`` is the one currency: trained
networks, the exact Gaussian-mixture model and guided variants all reduce to it.
"""

__version__ = "0.1.0"
