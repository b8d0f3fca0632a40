#!/usr/bin/env python
"""Django's command-line utility for Accrete."""

import os
import sys
from pathlib import Path

# platform/ is a plain folder, never a package (it would shadow the standard library's `platform`);
# the packages inside it (config, registry) are importable once the folder is on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
