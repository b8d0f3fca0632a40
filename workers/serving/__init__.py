"""The inference service (`python -m workers.serving`, `make serve-model`): the shared model over an
OpenAI-compatible HTTP API, following production as it moves, batching concurrent requests on CPU.

A worker-side process (Django set up like a Celery worker: it reads the registry and API tokens), at the layer
of workers.tasks: it may import workers.pipeline and the services; nothing imports it. Modules: `batching`
(Django-free: the loaded versions and the step loop), `versions` (which versions are held, the production
watcher), `app` (the Starlette routes), `__main__` (the command).
"""
