"""``python -m mimocorb ...``: the same as the ``mimocorb`` command."""

from mimocorb.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
