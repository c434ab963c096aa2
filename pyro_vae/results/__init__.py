"""The results layer: what every estimate is (a frozen dataclass of per-datapoint tensors, with
the :class:`~pyro_vae.results.estimand.Estimand` it estimates) and how it is shown (one view per
result type: text table, Markdown, strict JSON, one-line repr).

``tables`` (cells and tables), ``stats`` (standard errors, k̂ counts, :class:`Stats`),
``estimand``, ``view`` (the registry of views), ``result`` (the :class:`Result` mixin) and the
views themselves: ``estimates``, ``explanations``, ``comparisons``, ``evaluation``, ``training``.
"""
