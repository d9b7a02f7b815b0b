"""``python -m graphattn`` (and ``torchrun -m graphattn``) runs the ``graphattn`` command."""

from graphattn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
