"""/api/v1 (included by name from config.urls, which sits below every app)."""

from api.main import api

urlpatterns, _app, _namespace = api.urls
app_name = _namespace  # "api-v1": reverse("api-v1:openapi-json")
