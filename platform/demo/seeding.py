"""What the demo needs before it trains: the base model imported and scored on the retention probes, the
demo teams and people, and the demo skills with their demonstrations uploaded through the product's own
upload service. Each step skips what an earlier run already did."""

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils.text import slugify

from demo.progress import Terminal
from demo.settings import DEMO
from ops.management.commands.fetch_model import default_gguf
from registry.selectors import production_version
from skills.models import Skill
from skills.services import demonstration_set_upload, skill_create
from teams.models import Membership, Role, Team


def data_dir() -> Path:
    return Path(settings.BASE_DIR) / DEMO.data_dir


def skill_specs() -> list[dict]:
    """skills.json: one entry per demo skill (team, slug, name, scorer, teacher style, tolerances)."""
    return json.loads((data_dir() / "skills.json").read_text())


def base_model_import(term: Terminal) -> None:
    if production_version() is not None:
        term.say(f"Base model: {production_version().base_model.name} (imported before).")
        return
    gguf = default_gguf()
    if not gguf.exists():
        raise CommandError(f"{gguf} is missing: run `make model` (python manage.py fetch_model).")
    term.say(f"Importing {DEMO.base_model_name} (GGUF → safetensors, once) and scoring the retention probes …")
    call_command("import_base_model", gguf=str(gguf), name=DEMO.base_model_name,
                 probe_tolerance=DEMO.probe_tolerance, stdout=term.stdout)


def people_seed() -> tuple:
    """The requester (a contributor) asks for training; the approver (a skill owner) approves, in every
    demo team; and an `admin` for the admin site. Returns (requester, approver)."""
    users = get_user_model().objects
    teams = [Team.objects.get_or_create(slug=slugify(spec["team"]), defaults={"name": spec["team"]})[0]
             for spec in skill_specs()]
    made = []
    for name, role in ((DEMO.requester, Role.CONTRIBUTOR), (DEMO.approver, Role.SKILL_OWNER)):
        user = users.filter(username=name).first()
        if user is None:
            user = users.create_user(username=name, password=DEMO.password)
        for team in teams:
            Membership.objects.get_or_create(user=user, team=team, defaults={"role": role})
        made.append(user)
    if not users.filter(username="admin").exists():
        users.create_superuser(username="admin", password=DEMO.password)
    return made[0], made[1]


def skills_seed(term: Terminal, requester, *, owner) -> list[Skill]:
    """The demo skills, created by their skill `owner` (skill_create, audited), each with its demonstrations
    uploaded by the `requester` (split into training rows and a held-out eval suite by the upload service),
    in the order of skills.json."""
    skills = []
    for spec in skill_specs():
        skill = Skill.objects.filter(slug=spec["slug"]).first() or skill_create(
            team=Team.objects.get(slug=slugify(spec["team"])), slug=spec["slug"], name=spec["name"], actor=owner,
            description=spec["description"], scorer=spec["scorer"], scorer_options=spec.get("scorer_options", {}),
            teacher_style=spec["teacher_style"], tolerance=spec.get("tolerance", 0.0),
            min_gain=spec.get("min_gain", 0.0), max_new_tokens=spec.get("max_new_tokens", 48))
        if not skill.demonstration_sets.exists():
            path = data_dir() / f"{spec['slug']}.jsonl"
            outcome = demonstration_set_upload(skill=skill, path=path, filename=path.name, actor=requester)
            if not outcome.ok:
                raise CommandError(f"{path}: " + "; ".join(str(p) for p in outcome.report.problems[:5]))
            term.say(f"Skill {skill.slug}: uploaded {outcome.report.row_count} demonstrations → "
                     f"{outcome.train_count} train, {outcome.eval_count} held out ({skill.teacher_style} teacher).")
        skills.append(skill)
    return skills
