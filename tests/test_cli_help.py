"""The command line's help as a new user reads it: every option says what it does and states its
default, ``--data`` names the data sets, and no reStructuredText markup shows."""

import argparse
import re

import pytest

from pyro_vae.cli import build_parser, main
from pyro_vae.data import DATASETS
from pyro_vae.data.arrays import FILE_FORMATS

#: "(default 1000)", "(default: the model's default_guide)", "(default off)", or for an option
#: that has none, "(no default; ...)".
STATES_DEFAULT = re.compile(r"\((?:no )?default\b")
#: ``literal`` and roles such as :class:`...` or :func:`...`.
MARKUP = re.compile(r"``|:[a-z]+:`")


def _commands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


COMMANDS = sorted(_commands())


def test_the_check_of_defaults_tells_a_default_from_none():
    assert STATES_DEFAULT.search("K per datapoint (default 1000)")
    assert STATES_DEFAULT.search("progress bar (default: on a terminal only)")
    assert not STATES_DEFAULT.search("K per datapoint (1000)")
    assert not STATES_DEFAULT.search("the model's default guide")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_that_states_its_default(command):
    parser = _commands()[command]
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:  # a positional: help, its default need not be stated
            if not action.help:
                missing.append(f"{action.dest}: no help")
        elif not action.help:
            missing.append(f"{'/'.join(action.option_strings)}: no help")
        elif not STATES_DEFAULT.search(action.help):
            missing.append(f"{'/'.join(action.option_strings)}: no '(default ...)' in its help")
    assert not missing, f"pyro-vae {command}: " + "; ".join(missing)


def test_every_command_is_summarized_in_the_list_of_commands():
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {a.dest: a.help for a in sub._choices_actions}
    assert set(summaries) == set(COMMANDS)
    assert all(summaries.values()), summaries


@pytest.mark.parametrize("command", ["check", "train", "compare"])
def test_data_help_lists_the_registered_data_sets_and_the_file_formats(command):
    (data,) = [a for a in _commands()[command]._actions if "--data" in a.option_strings]
    for name in [*DATASETS.names(), *FILE_FORMATS.names()]:
        assert name in data.help, (command, name)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_restructuredtext_markup(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"] if command else ["--help"])
    assert exit.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: pyro-vae")
    assert not MARKUP.search(shown), MARKUP.search(shown).group()
