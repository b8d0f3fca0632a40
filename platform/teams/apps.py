from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "teams"
    verbose_name = "Teams and roles"

    def ready(self):
        from teams import signals  # noqa: F401 (connects the audit of roles, team moves and activation)
