"""`python -m workers.serving [--host 127.0.0.1] [--port 8100]`: the inference service under uvicorn.

Settings come from the environment like every other process (DATABASE_URL, ACCRETE_ARTIFACTS,
ACCRETE_INFERENCE_KEY, ACCRETE_SERVE_*: platform/config/settings.py)."""

import argparse
import os


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import django

    django.setup()
    import uvicorn

    from workers.serving.app import Service, create_app

    # One process, one event loop: the batcher is the parallelism (more workers would each hold the weights).
    uvicorn.run(create_app(Service.from_settings()), host=args.host, port=args.port, log_level=args.log_level,
                workers=1, timeout_graceful_shutdown=30)


if __name__ == "__main__":
    main()
