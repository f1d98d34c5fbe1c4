"""``mimocorb demo``: the muon-decay demo (also what ``mimocorb run`` runs without a setup file).

Runs the packaged setup (:data:`DEMO_SETUP`): simulator -> pulse finder (several
processes) -> exporters and displays, then fits the decay-time distribution and prints
``tau = <value> +- <error> ns``; the run folder gets the plots and ``summary.json``
(:mod:`mimocorb.demo.analysis`). ``mimocorb demo --copy DIR`` writes the setup, its config
files and modules to ``DIR`` as a template to edit (:func:`copy_demo`).

Registered as the command ``demo`` (entry point group ``mimocorb.commands``, see
:mod:`mimocorb.cli`); the options of the run are those of :mod:`mimocorb.cli.run_options`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from mimocorb.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mimocorb.cli.run_options import add_run_options, execute, make_run

#: The packaged demo: ``setup.yaml``, ``config/``, ``modules/``.
DEMO_DIR = Path(__file__).resolve().parent
DEMO_SETUP = DEMO_DIR / "setup.yaml"
#: Raw events of a default demo run: ~2,300 accepted decays, tau to about 2.5 %.
DEFAULT_EVENTS = 30000
#: Where run folders go unless --output says otherwise (relative to the current folder).
DEFAULT_OUTPUT = "target"
_TEMPLATE_PARTS = ("setup.yaml", "config", "modules")
#: A function of the demo named in the packaged form (``file_name: mimocorb.demo`` and
#: ``fkt_name`` on the next line, as the packaged setup writes them).
_PACKAGED = re.compile(r"^(?P<indent>\s*)file_name: mimocorb\.demo\s*\n(?P<next>\s*fkt_name: (?P<fkt>\w+))", re.M)


def template_setup(text: str) -> str:
    """The packaged setup ``text`` as a template: each demo function named by its module file
    beside the setup (``file_name: modules/muon_filter``), so that editing the file takes effect.

    Raises
    ------
    ValueError
        If a function of ``mimocorb.demo`` is named in another form than the packaged setup's,
        or lives outside ``mimocorb.demo.modules`` (the template would not hold it).
    """
    import mimocorb.demo as demo

    def local(m: re.Match) -> str:
        module = demo.FUNCTIONS.get(m["fkt"], "")
        if not module.startswith("mimocorb.demo.modules."):
            raise ValueError(f"{m['fkt']} is not a function of the demo's modules ({module or 'unknown'})")
        return f"{m['indent']}file_name: modules/{module.rsplit('.', 1)[1]}\n{m['next']}"

    out = _PACKAGED.sub(local, text)
    if re.search(r"file_name:\s*mimocorb\.demo\s*$", out, re.M):
        raise ValueError("a 'file_name: mimocorb.demo' is not followed by its fkt_name")
    return out


def copy_demo(target: str | Path) -> list[Path]:
    """Copy the demo's setup file, config files and modules to ``target`` (a template).

    The copy's setup names the demo's functions by their module files in ``modules/``
    (:func:`template_setup`); the packaged sources, exporters and displays it names stay
    packaged.

    Raises
    ------
    FileExistsError
        If a file would be overwritten (nothing is copied then).
    """
    target = Path(target)
    files = []
    for part in _TEMPLATE_PARTS:
        src = DEMO_DIR / part
        if src.is_dir():
            files += sorted(
                p for p in src.iterdir() if p.is_file() and p.suffix in (".py", ".yaml") and p.name != "__init__.py"
            )
        else:
            files.append(src)
    rel = [p.relative_to(DEMO_DIR) for p in files]
    clash = [str(target / r) for r in rel if (target / r).exists()]
    if clash:
        raise FileExistsError(f"would overwrite {', '.join(clash)}; choose an empty or new folder")
    out = []
    for src, r in zip(files, rel):
        dst = target / r
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src == DEMO_SETUP:
            dst.write_text(template_setup(src.read_text(encoding="utf-8")), encoding="utf-8")
        else:
            shutil.copyfile(src, dst)
        out.append(dst)
    return out


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo setup (or ``args.setup``), then fit and plot; return the exit code.

    Also what ``mimocorb run`` without a setup file runs (with the run's options).
    """
    from mimocorb.demo.analysis import analyse_run, format_result

    prog = f"mimocorb {args.command}"
    packaged = not getattr(args, "setup", None)
    events = args.events
    if events is None:
        events = DEFAULT_EVENTS if packaged else None
    setup = DEMO_SETUP if packaged else Path(args.setup)
    # the packaged setup's own output_directory would be inside the installed package
    run = make_run(args, prog, setup, events=events, output=args.output or (DEFAULT_OUTPUT if packaged else None))
    if isinstance(run, int):
        return run
    if packaged:
        run.setup_spec.name = "muon_demo"  # run folders muon_demo_<date>_<time>
    if events:
        # the sources stop after exactly N events (the demo's source honours number_of_events);
        # the run control's event limit stays as the bound for sources that do not
        for f in run.setup_spec.functions:
            if not f.buffers("read") and not f.buffers("observe"):
                f.config["number_of_events"] = events
    if events == 0 and not args.runtime:
        print(f"{prog}: no event or time limit: the run goes on until you stop it (Ctrl-C)")
    code = execute(run, args)
    folder = run.run_folder.path
    try:
        result = analyse_run(folder, plots=not getattr(args, "no_plots", False))
    except (OSError, ValueError) as exc:
        print(f"{prog}: no analysis of {folder}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for line in format_result(result):
        print(line)
    print(f"  run folder {folder}")
    return code


class DemoCommand:
    """``mimocorb demo``: run the muon-decay demo and fit the muon lifetime."""

    help = "run the muon-decay demo and fit the muon lifetime"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_run_options(
            p,
            events_help=f"raw events to take (default {DEFAULT_EVENTS}, or with --setup the setup's own limits; "
            "0: until --runtime or Ctrl-C)",
            output_default=f"./{DEFAULT_OUTPUT}",
        )
        p.add_argument("--copy", metavar="DIR", help="only write the setup, configs and modules to DIR (a template)")
        p.add_argument("--setup", metavar="FILE", help="run this setup (e.g. an edited copy), not the packaged one")
        p.add_argument("--no-plots", action="store_true", help="fit only, no PNG plots")

    def run(self, args: argparse.Namespace) -> int:
        if getattr(args, "copy", None):
            try:
                files = copy_demo(args.copy)
            except FileExistsError as exc:
                print(f"mimocorb demo: {exc}", file=sys.stderr)
                return EXIT_USAGE
            setup = Path(args.copy) / "setup.yaml"
            print(f"wrote {len(files)} files to {args.copy}:")
            for f in files:
                print(f"  {f}")
            print(f"run it with: mimocorb run {setup}   (or: mimocorb demo --setup {setup}, which also fits)")
            return EXIT_OK
        return run_demo(args)


demo = DemoCommand()

__all__ = ["DEFAULT_EVENTS", "DEFAULT_OUTPUT", "DEMO_DIR", "DEMO_SETUP", "DemoCommand", "copy_demo", "demo", "run_demo"]
