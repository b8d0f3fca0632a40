from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug

from config.errors import AccreteError
from ops.operator import as_operator
from registry.selectors import production_token_budget
from skills.models import Skill
from skills.services import demonstration_set_upload


class Command(BaseCommand):
    help = "Validate a demonstrations file and save it as the skill's next demonstration set (exit 1 on any problem)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--skill", required=True, help="The skill's slug.")
        parser.add_argument("--eval", dest="eval_file", help="An explicit eval file instead of the automatic split.")
        parser.add_argument("--seed", type=int, help="Split seed (default: derived from the file's content).")
        parser.add_argument("--dry-run", action="store_true", help="Validate and preview the split; save nothing.")

    @as_operator("upload_demonstrations")
    def handle(self, *args, **opts):
        # A path is shown as typed, except what cannot be printed: bytes that are not UTF-8 (they arrive as
        # lone surrogates) and control characters are shown escaped.
        shown = {key: _printable(opts[key]) for key in ("file", "eval_file") if opts[key] is not None}
        try:
            validate_slug(opts["skill"])  # checked before the query: the database need not see a hostile string
            skill = Skill.objects.get(slug=opts["skill"])
        except (ValidationError, Skill.DoesNotExist):
            raise CommandError(f"No skill with slug {_printable(opts['skill'])!r}; list them with the admin or "
                               "create it first.") from None
        try:
            outcome = demonstration_set_upload(skill=skill, path=opts["file"], filename=opts["file"], actor=None,
                                               eval_path=opts["eval_file"], seed=opts["seed"], dry_run=opts["dry_run"],
                                               budget=production_token_budget())
        except (OSError, AccreteError) as exc:
            raise CommandError(str(exc)) from None
        for label, report in (("file", outcome.report), ("eval file", outcome.eval_report)):
            if report is None or report.ok:
                continue
            self.stderr.write(f"{shown['file'] if label == 'file' else shown['eval_file']}: "
                              f"{len(report.problems) + report.problems_omitted} problem(s); nothing was saved.")
            for problem in report.problems:
                self.stderr.write(f"  {problem}")
            if report.problems_omitted:
                self.stderr.write(f"  … and {report.problems_omitted} more")
            raise SystemExit(1)
        for message in outcome.messages:
            self.stdout.write(message)
        if outcome.duplicate_of is not None:
            raise SystemExit(1)
        r = outcome.report
        saved = outcome.demonstration_set
        what = f"saved as {saved}" if saved else "valid (dry run: nothing saved)"
        self.stdout.write(self.style.SUCCESS(
            f"{shown['file']}: {r.row_count} rows ({r.format}), {what}; "
            f"{outcome.train_count} for training, {outcome.eval_count} held out for evaluation."))
        if r.prompt_length and r.demonstration_length:
            self.stdout.write(f"  prompt length ({r.length_unit}): min {r.prompt_length.min}, mean "
                              f"{r.prompt_length.mean:.1f}, max {r.prompt_length.max}; demonstration: min "
                              f"{r.demonstration_length.min}, mean {r.demonstration_length.mean:.1f}, max "
                              f"{r.demonstration_length.max}")


def _printable(text: str) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)
