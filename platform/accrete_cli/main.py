"""Placeholder replaced by the CLI implementation."""


def main(argv=None) -> int:
    return 0
