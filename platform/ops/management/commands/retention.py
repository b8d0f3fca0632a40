"""`manage.py retention [--dry-run]`: delete the merged weights of candidates that can never become
production and are older than ACCRETE_RETENTION_DAYS (registry.services.retention; adapters kept). The beat
runs the same service daily (workers.tasks.apply_retention)."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from ops.operator import as_operator
from registry.services.retention import retention_apply


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Command(BaseCommand):
    help = ("Delete the merged weights of blocked, rejected, stale and failed candidates older than "
            "ACCRETE_RETENTION_DAYS (their adapters are kept; production and its lineage never go).")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List what would be deleted; delete nothing.")

    @as_operator("retention")
    def handle(self, *args, **opts):
        days = settings.ACCRETE_RETENTION_DAYS
        if days == 0:
            self.stdout.write("The retention policy is off (ACCRETE_RETENTION_DAYS=0): nothing is deleted.")
            return
        items = retention_apply(dry_run=opts["dry_run"])
        if not items:
            self.stdout.write(f"Nothing to delete: no blocked, rejected, stale or failed candidate older than "
                              f"{days} days still has merged weights.")
            return
        now = timezone.now()
        self.stdout.write(f"{'version':<9} {'status':<10} {'age':>6} {'files':>5} {'size':>10}  folder (kept)")
        for item in items:
            version = item.version
            self.stdout.write(f"v{version.number:<8} {version.status:<10} {(now - version.created_at).days:>5}d "
                              f"{len(item.files):>5} {_size(item.bytes):>10}  {item.key} "
                              f"({', '.join(item.kept) or 'nothing'})")
        total = _size(sum(item.bytes for item in items))
        if opts["dry_run"]:
            self.stdout.write(f"Dry run: {len(items)} version(s), {total} would be deleted. Nothing was deleted.")
        else:
            self.stdout.write(f"Deleted the merged weights of {len(items)} version(s), {total}; each deletion "
                              "is in the audit log (artifact.deleted).")
