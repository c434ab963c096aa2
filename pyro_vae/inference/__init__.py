"""Estimators on ANY Pyro model/guide pair with its data in ``pyro.plate("data", N)``.

``importance`` (per-datapoint log weights, vectorized over samples), ``log_likelihood``
(importance-sampled log p(x) with standard error, ESS and Pareto k̂), ``elbo`` (the ELBO and the
gap). Nothing here imports the spec language, the builder or run directories.
"""
