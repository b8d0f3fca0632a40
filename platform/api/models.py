"""What the API keeps between an upload's two calls (the browser keeps it in its session): the validated
upload, whose files wait under VAR_DIR/uploads by token (skills.uploads), and who may confirm it."""

from django.conf import settings
from django.db import models


class PendingUpload(models.Model):
    token = models.CharField(max_length=32, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    skill = models.ForeignKey("skills.Skill", on_delete=models.CASCADE, related_name="+")
    validated = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pending upload {self.token[:8]}… for {self.skill_id}"
