"""The engine's contract with the platform: pure Python, importable by the web process.

The training config and its validation, the scorers and answer extraction, the retention-probe and
anchor-pool formats (with the shipped files), prompt templates and the paired intervals the gate
reports. Nothing here imports torch, transformers or Django (an import-linter contract checks it).
"""
