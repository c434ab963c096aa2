"""Training objectives: ELBO estimators by name, their checks, the fused step, and comparing them.

``registry`` (names → estimators, :class:`~pyro_vae.objectives.registry.ObjectiveChoice`),
``checks`` (what each estimator needs of a pair), ``iwae``, ``dreg``, ``renyi``, ``trace_graph``
(estimators Pyro lacks or needs adapted), ``fused`` (the trace-free single-particle step and its
cross-check), ``comparison`` (value, bias, gradient variance and SNR of estimators on any pair).
"""
