"""Browser forms: they parse and bound input; the services decide."""

import json

from django import forms

from registry.models import TrainingJob
from skills.models import Skill
from workers.engine.scoring import SCORER_KINDS


class SkillCreateForm(forms.Form):
    slug = forms.SlugField(max_length=60, help_text="Short id used in version labels, e.g. policy-codes.")
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    scorer = forms.ChoiceField(choices=[(kind, f"{kind} — {text}") for kind, text in SCORER_KINDS])
    scorer_options = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"case_sensitive": false}'}),
        help_text="Optional JSON object, e.g. {\"fields\": [\"queue\"]} for json_fields.")
    teacher_style = forms.ChoiceField(choices=Skill.TeacherStyle.choices, initial=Skill.TeacherStyle.INLINE)
    tolerance = forms.FloatField(min_value=0, max_value=1, initial=0.0,
                                 help_text="Largest score drop (0..1) the gate accepts on this skill.")
    min_gain = forms.FloatField(min_value=0, max_value=1, initial=0.0,
                                help_text="Least improvement (0..1) a candidate adding this skill must show.")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=64)

    def clean_scorer_options(self):
        raw = self.cleaned_data["scorer_options"].strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON ({exc.msg} at column {exc.colno}).") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Scorer options must be a JSON object, e.g. {\"case_sensitive\": false}.")
        return value


class UploadForm(forms.Form):
    skill = forms.ModelChoiceField(queryset=Skill.objects.none(), empty_label=None)
    file = forms.FileField(help_text="JSONL or CSV: prompt, demonstration and (optionally) reference per row.")
    eval_file = forms.FileField(required=False,
                                help_text="Optional explicit eval set; without it 20% of the rows are held out.")

    def __init__(self, *args, skills=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Any skill id is accepted here; the view scopes it (404 outside the user's teams).
        self.fields["skill"].queryset = skills if skills is not None else Skill.objects.all()


class TrainForm(forms.Form):
    method = forms.ChoiceField(choices=TrainingJob.Method.choices, initial=TrainingJob.Method.SDFT,
                               widget=forms.RadioSelect)
    demonstration_set = forms.ModelChoiceField(queryset=None, empty_label=None)
    learning_rate = forms.FloatField(required=False, min_value=0, help_text="Default: the method's default.")
    num_epochs = forms.FloatField(required=False, min_value=0, label="Epochs", help_text="Default 1.")
    max_steps = forms.IntegerField(required=False, min_value=1, help_text="Overrides epochs when set.")
    batch_size = forms.IntegerField(required=False, min_value=1, help_text="Default 4.")
    lora_r = forms.IntegerField(required=False, min_value=1, label="LoRA rank (r)", help_text="Default 8.")

    HYPERPARAMETERS = ("learning_rate", "num_epochs", "max_steps", "batch_size", "lora_r")

    def __init__(self, *args, demonstration_sets, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["demonstration_set"].queryset = demonstration_sets
        self.fields["demonstration_set"].label_from_instance = (
            lambda d: f"v{d.version} — {d.filename} ({d.train_count} train / {d.eval_count} eval)")
        latest = demonstration_sets.first()
        if latest is not None:
            self.fields["demonstration_set"].initial = latest.pk

    def config(self) -> dict:
        """Only the fields the user set: everything else keeps the engine's defaults."""
        return {name: self.cleaned_data[name] for name in self.HYPERPARAMETERS
                if self.cleaned_data.get(name) is not None}


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
