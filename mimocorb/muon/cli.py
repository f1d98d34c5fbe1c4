"""``mimocorb demo``: the muon-decay demo (also what ``mimocorb run`` runs without a setup file).

Runs the packaged setup (:data:`DEMO_DIR`): simulator -> pulse finder (several
processes) -> exporters and displays, then fits the decay-time distribution and prints
``tau = <value> +- <error> ns``; the run folder gets the plots and ``summary.json``.
``mimocorb demo --copy DIR`` writes the setup, its config files and modules to ``DIR``
as a template to edit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mimocorb.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, command, run_options_problem

#: The packaged demo: ``setup.yaml``, ``config/``, ``modules/``.
DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_SETUP = DEMO_DIR / "setup.yaml"
#: Raw events of a default demo run: ~2,300 accepted decays, tau to about 2.5 %.
DEFAULT_EVENTS = 30000
#: Where run folders go unless --output says otherwise (relative to the current folder).
DEFAULT_OUTPUT = "target"
_TEMPLATE_PARTS = ("setup.yaml", "config", "modules")


def copy_demo(target: str | Path) -> list[Path]:
    """Copy the demo's setup file, config files and modules to ``target``.

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
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", type=float, metavar="S", help="end the run after S seconds (0: no limit)")
    p.add_argument("--output", metavar="DIR", help=f"put the run folder in DIR (default: ./{DEFAULT_OUTPUT})")
    p.add_argument("--headless", action="store_true", help="no keyboard control and no windows (PNG snapshots)")
    p.add_argument("--gui", action="store_true", help="show the control window (needs a display)")
    p.add_argument("--start-method", choices=["fork", "spawn"], help="how worker processes start (default: fork)")
    p.add_argument("--status-interval", type=float, default=1.0, metavar="S", help="seconds between status lines")
    p.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="S", help="bound for each shutdown step")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less output (-q: no worker output, -qq: less)")
    p.add_argument("--debug", action="store_true", help="debug logging in the run log")


@command("demo", help="run the muon-decay demo and fit the muon lifetime")
def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--events",
        type=int,
        metavar="N",
        help=f"raw events to take (default {DEFAULT_EVENTS}, or with --setup the setup's own limits; "
        "0: until --runtime or Ctrl-C)",
    )
    _add_run_options(p)
    p.add_argument("--copy", metavar="DIR", help="only write the demo's setup, configs and modules to DIR (a template)")
    p.add_argument("--setup", metavar="FILE", help="run this setup (e.g. an edited copy) instead of the packaged one")
    p.add_argument("--no-plots", action="store_true", help="fit only, no PNG plots")


@_demo_arguments.runner
def _demo(args: argparse.Namespace) -> int:
    if args.copy:
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


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo setup (or ``args.setup``), then fit and plot; return the exit code.

    Also used by ``mimocorb run`` without a setup file.
    """
    from mimocorb.daq.run_control import RunControl
    from mimocorb.daq.setup_file import SetupFileError
    from mimocorb.muon.analysis import analyse_run, format_result

    prog = f"mimocorb {args.command}"
    packaged = not getattr(args, "setup", None)
    problem = run_options_problem(args, prog)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    events = args.events
    if events is None:
        events = DEFAULT_EVENTS if packaged else None
    setup = DEMO_SETUP if packaged else Path(args.setup)
    # the packaged setup's own output_directory would be inside the installed package
    output = args.output or (DEFAULT_OUTPUT if packaged else None)
    try:
        run = RunControl(
            setup,
            verbose=max(0, 2 - args.quiet),
            debug=args.debug,
            runtime=args.runtime,
            runevents=events,
            output_directory=output,
            headless=args.headless,
            start_method=args.start_method,
            status_interval=args.status_interval,
            shutdown_timeout=args.shutdown_timeout,
        )
    except SetupFileError as exc:
        print(f"{prog}: invalid setup {setup}:", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return EXIT_USAGE
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
    run.setup()
    if args.gui:
        from mimocorb.gui.control_window import run_with_control_window

        code = run_with_control_window(run)
    else:
        code = run.run()
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
