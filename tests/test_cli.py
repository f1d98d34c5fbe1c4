"""The command line: commands register themselves, the run options are defined once,
and the layers import only downwards (the physics library and the generic command line
know no application)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mimocorb.cli import build_parser, load_commands


def _subparsers(parser):
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return action.choices


def test_commands_come_from_the_entry_point_group():
    commands = load_commands()
    assert list(commands) == ["cleanup", "demo", "keys", "run"]  # sorted by name
    for cmd in commands.values():
        assert cmd.help and callable(cmd.add_arguments) and callable(cmd.run)
    assert type(commands["demo"]).__module__ == "mimocorb.demo.command"


def test_run_and_demo_share_the_run_options():
    sub = _subparsers(build_parser(load_commands()))
    options = {
        name: {a.option_strings[-1]: (a.help, a.default, a.type) for a in sub[name]._actions if a.option_strings}
        for name in ("run", "demo")
    }
    shared = set(options["run"]) & set(options["demo"])
    assert {"--runtime", "--headless", "--gui", "--shutdown-timeout", "--quiet", "--debug"} <= shared
    differing = {o for o in shared if options["run"][o] != options["demo"][o]}
    assert differing == {"--events", "--output"}  # each command says what these default to
    assert set(options["demo"]) - set(options["run"]) == {"--copy", "--setup", "--no-plots"}


def _imported_after(code: str) -> set[str]:
    """The mimocorb modules a fresh interpreter has imported after ``code``."""
    probe = code + "\nimport sys\nprint(' '.join(m for m in sys.modules if m.startswith('mimocorb')))\n"
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return set(p.stdout.split())


def _under(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


def test_the_generic_command_line_does_not_import_the_demo():
    mods = _imported_after("import mimocorb.cli, mimocorb.cli.commands, mimocorb.cli.run_options")
    assert not _under(mods, "mimocorb.demo", "mimocorb.muon")


@pytest.mark.parametrize("module", ["simulator", "peak_search", "pulse_finder", "lifetime"])
def test_the_muon_library_imports_no_application_or_daq(module):
    mods = _imported_after(f"import mimocorb.muon.{module}")
    assert not _under(
        mods,
        "mimocorb.daq",
        "mimocorb.gui",
        "mimocorb.cli",
        "mimocorb.demo",
        "mimocorb.sources",
        "mimocorb.exporters",
        "mimocorb.net",
        "mimocorb.mimo_buffer",
        "mimocorb.buffer_control",
    )


def test_run_without_setup_and_without_the_default_job_is_a_usage_error(capsys):
    from mimocorb.cli import EXIT_USAGE
    from mimocorb.cli.commands import run

    parser = build_parser({"run": run})
    args = parser.parse_args(["run"])
    args.commands = {"run": run}
    assert run.run(args) == EXIT_USAGE
    assert "no setup file given" in capsys.readouterr().err
