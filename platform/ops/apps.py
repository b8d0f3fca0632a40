from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operator commands (`manage.py …`): each parses its arguments, calls the services of the apps below,
    and prints. The ones that run the engine (import_base_model, gate) do so in the calling process."""

    name = "ops"
    verbose_name = "Operator commands"
