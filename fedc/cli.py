"""The ``fedc`` command line (filled in by the CLI issue)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fedc", description="A compiler for federated computations.")
    from fedc import __version__

    parser.add_argument("--version", action="version", version=f"fedc {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
