"""Entry point of the PyInstaller bundle: straight into the window (``CopyLens [INDEX] [--query PATH]``,
``CopyLens demo``)."""

import sys

from copylens.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
