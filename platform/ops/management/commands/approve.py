from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from config.errors import AccreteError
from registry.models import ModelVersion, PromotionRequest
from registry.services.approvals import approval_decide


class Command(BaseCommand):
    help = "Approve (promoting it) or reject a candidate as a skill owner. Exit 1 when refused."

    def add_arguments(self, parser):
        parser.add_argument("version", help="Version number, e.g. 3 or v3.")
        parser.add_argument("--user", required=True, help="The approving skill owner's username.")
        parser.add_argument("--reject", action="store_true")
        parser.add_argument("--comment", default="")

    def handle(self, *args, **opts):
        try:
            version = ModelVersion.objects.get(number=int(opts["version"].lstrip("v")))
            user = get_user_model().objects.get(username=opts["user"])
        except (ValueError, ModelVersion.DoesNotExist, get_user_model().DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        try:
            request = PromotionRequest.objects.filter(version=version, status="open").first()
            if request is None:
                closed = version.promotion_requests.filter(status=PromotionRequest.Status.CLOSED).last()
                raise AccreteError(f"v{version.number} is {version.get_status_display().lower()} and has no open "
                                   "promotion request" + (f" (its request was closed: {closed.closed_reason})"
                                                          if closed else "") +
                                   ": only a candidate that passed the gate, put up for approval by its requester, "
                                   "can be approved.")
            approval_decide(request=request, approver=user, decision="reject" if opts["reject"] else "approve",
                            comment=opts["comment"])
        except AccreteError as exc:
            self.stderr.write(f"Refused: {exc}")
            raise SystemExit(1) from None
        version.refresh_from_db()
        self.stdout.write(f"v{version.number} is now {version.status}.")
