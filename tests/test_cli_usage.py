"""nnmsf's own usage text: the summary names every command, every option says what it does, and the trainer
names that scripts read come from the one declaration of Table 1."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from nnunet_medsam_fusion.cli import build_parser
from nnunet_medsam_fusion.trainer_table import TABLE1_TRAINERS

NNMSF = Path(sys.executable).parent / "nnmsf"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_summary_names_every_command():
    parser = build_parser()
    summary = parser.description
    missing = [name for name in subcommands(parser) if name not in summary]
    assert not missing, f"nnmsf --help's summary omits {missing}"


# benchmark's options are declared in benchmarking/command.py, whose owners add their help texts there.
NOT_CHECKED_HERE = {"benchmark"}


def test_every_option_has_help_text():
    undocumented = []
    for name, sub in subcommands(build_parser()).items():
        if name in NOT_CHECKED_HERE:
            continue
        for action in sub._actions:
            if action.option_strings and action.help is None:
                undocumented.append(f"{name} {'/'.join(action.option_strings)}")
    assert not undocumented, f"options without help text: {undocumented}"


def test_trainers_table1_prints_the_rows_one_per_line():
    done = subprocess.run([str(NNMSF), "trainers", "--table1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == list(TABLE1_TRAINERS)
