"""Accrete's training engine: a Django-free package (torch, transformers, peft, trl).

Nothing is imported here on purpose: the web process imports ``workers.engine.scoring`` and
``workers.engine.prompts`` (pure Python) and must never pay for, or depend on, torch.
"""
