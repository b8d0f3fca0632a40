"""Accrete's training engine: a Django-free package (torch, transformers, peft, trl).

Two audiences, two packages: ``workers.engine.contract`` holds the pure-Python modules the web
process may import (config, scorers, probe and anchor formats, prompts, intervals); every other module
here loads torch. Nothing is imported here on purpose. import-linter contracts in pyproject.toml keep
the engine free of Django and the contract free of torch.
"""
