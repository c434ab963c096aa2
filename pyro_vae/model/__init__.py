"""Specs → Pyro model/guide: distribution families, guide families, nets, and the builder.

``families`` (model nodes), ``guide_families`` (variational families), ``nets`` (parents →
raw parameters) are registries the spec language validates against; ``latent_model`` builds a
:class:`~pyro_vae.model.latent_model.LatentModel` from a parsed model and guide spec.
(Kept free of imports: ``spec.parse`` imports the registries, ``latent_model`` imports ``spec``.)
"""
