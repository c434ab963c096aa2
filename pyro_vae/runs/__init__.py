"""The run-directory application: training runs, checkpoints, evaluation and comparison of runs,
reports and plots.

``config`` (:class:`~pyro_vae.runs.config.TrainConfig` and the run's data), ``run_dir`` (the
files of a run), ``checkpoint`` (safetensors, no pickle), ``training`` (the SVI loop, resume),
``evaluate`` (``pyro-vae evaluate``), ``compare`` (``pyro-vae compare``), ``report`` and ``plots``.
"""
