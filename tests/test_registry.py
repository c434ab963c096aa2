"""How a registry prints: its kind and names on one line, or a listing with descriptions."""

from types import SimpleNamespace

import pyro_vae as pv
from pyro_vae.data import DATASETS
from pyro_vae.registry import Registry


def test_a_registry_prints_its_names_and_the_first_line_of_each_description():
    things = Registry("thing")

    @things.register("documented")
    def documented():
        """First ``line``.

        More.
        """

    things.register("described")(SimpleNamespace(description="A description.\nMore."))
    things.register("helped")(SimpleNamespace(help="Some help."))
    things.register("plain")(object())  # only its class's docstring: not a description
    things.register("bare")(lambda: None)
    assert repr(things) == "Registry('thing': bare, described, documented, helped, plain)"
    assert str(things).splitlines() == [
        "thing registry, 5 entries:",
        "  bare",
        "  described   A description.",
        "  documented  First line.",
        "  helped      Some help.",
        "  plain",
    ]
    assert repr(Registry("empty")) == "Registry('empty': no entries)"


def test_the_package_registries_print_readably():
    line = repr(pv.OBJECTIVES)
    assert line.startswith("Registry('objective': ") and "\n" not in line
    assert all(name in line for name in pv.OBJECTIVES.names())
    listing = str(DATASETS).splitlines()
    assert listing[0] == f"data set registry, {len(DATASETS.names())} entries:"
    assert any(row.split()[0] == "digits" and "Grayscale" in row for row in listing[1:])


def test_registries_print_their_entries():
    assert repr(pv.OBJECTIVES).startswith("Registry('objective': ")
    assert "iwae_dreg" in str(pv.OBJECTIVES) and "trace_mean_field" in repr(pv.OBJECTIVES)
