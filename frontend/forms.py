"""Browser forms: they parse and bound input; the services decide."""

import json

from django import forms

from skills.models import Skill
from skills.parsing import JSONRefused, load_json
from teams.models import ROLE_RANK, Role, Team
from training.models import TrainingJob
from webhooks.models import EVENTS
from workers.engine.contract.config import MAX_ANCHOR_RATIO
from workers.engine.contract.scoring import SCORER_KINDS


def _scorer_options(raw: str) -> dict:
    """The scorer options field: a JSON object, read by the uploads' strict reader (no NaN, no 5,000-digit
    numbers, no thousands of nested brackets, no lone surrogates)."""
    raw = raw.strip()
    if not raw:
        return {}
    try:
        value = load_json(raw)
    except JSONRefused as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise forms.ValidationError("Scorer options must be a JSON object, e.g. {\"case_sensitive\": false}.")
    return value


class SkillCreateForm(forms.Form):
    slug = forms.SlugField(max_length=60, help_text="Short id used in version labels, e.g. policy-codes.")
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
    scorer = forms.ChoiceField(choices=[(kind, f"{kind} — {text}") for kind, text in SCORER_KINDS])
    scorer_options = forms.CharField(
        required=False, max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"case_sensitive": false}'}),
        help_text="Optional JSON object, e.g. {\"fields\": [\"queue\"]} for json_fields.")
    teacher_style = forms.ChoiceField(choices=Skill.TeacherStyle.choices, initial=Skill.TeacherStyle.INLINE)
    tolerance = forms.FloatField(min_value=0, max_value=1, initial=0.0,
                                 help_text="Largest score drop (0..1) the gate accepts on this skill.")
    min_gain = forms.FloatField(min_value=0, max_value=1, initial=0.0,
                                help_text="Least improvement (0..1) a candidate adding this skill must show.")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=64)

    def clean_scorer_options(self):
        return _scorer_options(self.cleaned_data["scorer_options"])


class SkillEditForm(forms.Form):
    """A skill's description and gate rules. What tightens the rules applies at once; what could loosen them
    (a larger tolerance, a smaller minimum gain, another scorer) waits for another skill owner."""

    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
    scorer = forms.ChoiceField(choices=[(kind, f"{kind} — {text}") for kind, text in SCORER_KINDS])
    scorer_options = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="A JSON object; empty for the scorer's defaults.")
    tolerance = forms.FloatField(min_value=0, max_value=1,
                                 help_text="Largest score drop (0..1) the gate accepts on this skill. A larger "
                                           "value waits for another skill owner's approval.")
    min_gain = forms.FloatField(min_value=0, max_value=1,
                                help_text="Least improvement (0..1) a candidate adding this skill must show. A "
                                          "smaller value waits for another skill owner's approval.")
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                              label="Why", help_text="Shown to the skill owner who approves a loosening.")

    @classmethod
    def initial_for(cls, skill: Skill) -> dict:
        return {"description": skill.description, "scorer": skill.scorer, "tolerance": skill.tolerance,
                "min_gain": skill.min_gain,
                "scorer_options": json.dumps(skill.scorer_options, ensure_ascii=False) if skill.scorer_options else ""}

    def clean_scorer_options(self):
        return _scorer_options(self.cleaned_data["scorer_options"])


class UploadForm(forms.Form):
    """The skill list offers `skills` only — the user's current team's (views_upload passes
    skills_of_team(request.team)); without them it offers none, never every team's. Any skill id is
    accepted on submit: the view scopes it (404 outside the user's teams, not "invalid choice")."""

    skill = forms.ModelChoiceField(queryset=Skill.objects.none(), empty_label=None)
    file = forms.FileField(help_text="JSONL or CSV: prompt, demonstration and (optionally) reference per row.")
    eval_file = forms.FileField(required=False,
                                help_text="Optional explicit eval set; without it 20% of the rows are held out.")

    def __init__(self, *args, skills=None, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["skill"]
        field.queryset = Skill.objects.all()  # what a submitted id is looked up in
        offered = forms.ModelChoiceField(queryset=skills if skills is not None else Skill.objects.none(),
                                         empty_label=None)
        field.widget.choices = offered.choices  # what the page lists


class TrainForm(forms.Form):
    method = forms.ChoiceField(choices=TrainingJob.Method.choices, initial=TrainingJob.Method.SDFT,
                               widget=forms.RadioSelect)
    demonstration_set = forms.ModelChoiceField(queryset=None, empty_label=None)
    learning_rate = forms.FloatField(required=False, min_value=0, help_text="Default: the method's default.")
    num_epochs = forms.FloatField(required=False, min_value=0, label="Epochs", help_text="Default 1.")
    max_steps = forms.IntegerField(required=False, min_value=1, help_text="Overrides epochs when set.")
    batch_size = forms.IntegerField(required=False, min_value=1, help_text="Default 4.")
    lora_r = forms.IntegerField(required=False, min_value=1, label="LoRA rank (r)", help_text="Default 8.")
    anchor_ratio = forms.FloatField(
        required=False, min_value=0, max_value=MAX_ANCHOR_RATIO, label="Anchor ratio",
        help_text="Retention anchor rows per skill row in each step. Default: 1 for SDFT, 0 for SFT; "
                  "0 = paper-pure SDFT (no anchoring).")
    anchor_teacher = forms.ChoiceField(
        required=False, label="Anchor teacher",
        choices=[("", "default (EMA)"), ("ema", "EMA teacher (slowly moving)"),
                 ("base", "base: the starting model")],
        help_text="What anchor rows are pulled toward.")
    rehearsal = forms.ChoiceField(
        required=False, label="Rehearsal of earlier skills",
        choices=[("", "default (anchor)"), ("anchor", "anchor: their prompts as anchor rows"),
                 ("demonstration", "demonstration: SDFT rows with their demonstrations"), ("off", "off")],
        help_text="Earlier skills' training rows (never their eval cases) join the anchors.")
    rehearsal_skills = forms.CharField(
        required=False, max_length=2000, label="Skills to rehearse",
        help_text="Comma-separated skill slugs, e.g. policy-codes, ticket-routing. Empty: every earlier skill.")

    # A retrain carries the blocked job's other settings (e.g. num_loss_tokens_to_skip) unchanged.
    carried = forms.CharField(required=False, widget=forms.HiddenInput, max_length=20_000)

    HYPERPARAMETERS = ("learning_rate", "num_epochs", "max_steps", "batch_size", "lora_r")
    NOT_CARRIED = {"method", "teacher_style", "anchor_pool_sha256"}  # job_request sets these itself
    RETENTION = ("anchor_ratio", "anchor_teacher", "rehearsal", "rehearsal_skills")

    def __init__(self, *args, demonstration_sets, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["demonstration_set"].queryset = demonstration_sets
        self.fields["demonstration_set"].label_from_instance = (
            lambda d: f"v{d.version} — {d.filename} ({d.train_count} train / {d.eval_count} eval)")
        latest = demonstration_sets.first()
        if latest is not None:
            self.fields["demonstration_set"].initial = latest.pk

    def clean_rehearsal_skills(self) -> list[str] | None:
        slugs = [slug.strip() for slug in self.cleaned_data["rehearsal_skills"].split(",") if slug.strip()]
        if not slugs:
            return None
        unknown = sorted(set(slugs) - set(Skill.objects.filter(slug__in=slugs).values_list("slug", flat=True)))
        if unknown:
            raise forms.ValidationError(f"No skill {', '.join(repr(s) for s in unknown)}: use the skills' slugs, "
                                        "separated by commas.")
        return list(dict.fromkeys(slugs))

    def clean_carried(self) -> dict:
        raw = self.cleaned_data["carried"].strip()
        try:
            value = load_json(raw) if raw else {}
        except JSONRefused:
            value = None
        if not isinstance(value, dict):
            raise forms.ValidationError("The carried settings are not a JSON object; start the form again.")
        return {k: v for k, v in value.items() if k not in self.NOT_CARRIED}

    def config(self) -> dict:
        """The fields the user set, over the settings a retrain carries; the rest keeps the engine's defaults."""
        return {**self.cleaned_data.get("carried", {}),
                **{name: self.cleaned_data[name] for name in self.HYPERPARAMETERS + self.RETENTION
                   if self.cleaned_data.get(name) not in (None, "")}}

    @classmethod
    def initial_for_retrain(cls, *, job: TrainingJob, remedy) -> dict:
        """A blocked job's form again, by SDFT, with the remedy's retention settings: the same skill and
        demonstration set, the job's hyperparameters."""
        config = {**job.config, **remedy.config}
        initial = {name: config[name] for name in cls.HYPERPARAMETERS + cls.RETENTION if config.get(name) is not None}
        if isinstance(initial.get("rehearsal_skills"), list):
            initial["rehearsal_skills"] = ", ".join(initial["rehearsal_skills"])
        carried = {k: v for k, v in config.items()
                   if k not in initial and k not in cls.NOT_CARRIED and k not in cls.RETENTION}
        return {**initial, "method": TrainingJob.Method.SDFT, "demonstration_set": job.demonstration_set_id,
                "carried": json.dumps(carried, sort_keys=True)}


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class PlaygroundForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=8000)
    version = forms.ModelChoiceField(queryset=None, empty_label=None)
    compare_with = forms.ModelChoiceField(queryset=None, required=False, empty_label="— none —")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=1024, initial=128)

    def __init__(self, *args, versions, production=None, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("version", "compare_with"):
            self.fields[name].queryset = versions
            self.fields[name].label_from_instance = lambda v: f"{v.label} · {v.get_status_display()}"
        if production is not None:
            self.fields["version"].initial = production.pk


class AuditFilterForm(forms.Form):
    action = forms.CharField(required=False)
    team = forms.IntegerField(required=False)
    actor = forms.CharField(required=False)


# --- API tokens, service accounts and webhooks (issue #14) -----------------------------------------------

TOKEN_EXPIRY = [("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("never", "never (not recommended)")]
SERVICE_ACCOUNT_ROLES = (Role.VIEWER, Role.CONTRIBUTOR, Role.SKILL_OWNER)


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “CI pipeline” or “accrete CLI on my laptop”.")
    expires_in = forms.ChoiceField(choices=TOKEN_EXPIRY, initial="90", label="Expires in")

    def clean_expires_in(self) -> int | None:
        value = self.cleaned_data["expires_in"]
        return None if value == "never" else int(value)


class ServiceAccountCreateForm(forms.Form):
    """The page offers the roles up to the creator's own; any role is accepted on submit, so the service says
    why one above it is refused (not "invalid choice")."""

    name = forms.CharField(max_length=60, help_text="Letters, digits and dashes, e.g. ci-pipeline.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER,
                             help_text="What its tokens may do in the team; at most your own role.")
    description = forms.CharField(max_length=300, required=False)

    def __init__(self, *args, own_role: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        rank = ROLE_RANK[Role(own_role)] if own_role else -1
        self.fields["role"].widget.choices = [(r.value, r.label) for r in SERVICE_ACCOUNT_ROLES if ROLE_RANK[r] <= rank]


class WebhookCreateForm(forms.Form):
    """The team list offers `teams` only (those where the user is a skill owner); any team id is accepted on
    submit: the view scopes it (404 outside the user's teams) and the service checks the role."""

    team = forms.ModelChoiceField(queryset=Team.objects.none(), empty_label=None)
    url = forms.CharField(max_length=500, label="URL", widget=forms.TextInput(attrs={"placeholder": "https://", "inputmode": "url"}),
                          help_text="Where Accrete POSTs each event (http:// or https://).")
    events = forms.MultipleChoiceField(choices=[(event, event) for event in EVENTS], required=False,
                                       widget=forms.CheckboxSelectMultiple,
                                       help_text="None ticked: every event, including ones added later.")
    description = forms.CharField(max_length=200, required=False)

    def __init__(self, *args, teams=None, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["team"]
        field.queryset = Team.objects.all()  # what a submitted id is looked up in
        offered = forms.ModelChoiceField(queryset=teams if teams is not None else Team.objects.none(),
                                         empty_label=None)
        field.widget.choices = offered.choices  # what the page lists
