"""The spec language: TOML model and guide specs, parsed and validated into dataclasses.

``options`` holds value checks, ``parse`` the model/guide readers, ``resolve`` the lookup of bundled
spec names. (Kept free of imports so that families and nets can use ``options`` without a cycle.)
"""
