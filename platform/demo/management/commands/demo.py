"""`make demo`: a single model gains skill after skill, and the gate catches a forgetting update.

The story is demo/scenario.py; what it seeds, demo/seeding.py; the worker it starts, demo/worker.py; the
settings it trains with, demo/settings.py; the report it writes, demo/report.py. Later runs skip what is
done."""

from django.core.management.base import BaseCommand

from demo import scenario
from demo.progress import Terminal


class Command(BaseCommand):
    help = "Run the Accrete demo on the embedded default (SQLite, filesystem broker, a local worker)."

    def add_arguments(self, parser):
        parser.add_argument("--no-worker", action="store_true", help="Use an already running worker.")

    def handle(self, *args, **opts):
        scenario.run(Terminal(self.stdout, self.style), with_worker=not opts["no_worker"])
