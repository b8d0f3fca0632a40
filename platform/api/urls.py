"""/api/v1 (included by name from config.urls, which sits below every app). A path the API does not have
answers a problem document too, not the browser's HTML 404 page."""

from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

from api.main import api
from api.problems import NOT_FOUND, problem

ninja_patterns, _app, _namespace = api.urls
app_name = _namespace  # "api-v1": reverse("api-v1:openapi-json")


@csrf_exempt  # it changes nothing; a token client has no CSRF cookie and should still read the problem
def no_such_endpoint(request, rest=""):
    return problem(request, 404, f"No such endpoint: {request.method} {request.path}. The endpoints are listed at "
                   "/api/v1/docs. " + NOT_FOUND, code="not-found")


urlpatterns = [*ninja_patterns, re_path(r"^(?P<rest>.*)$", no_such_endpoint, name="no-such-endpoint")]
