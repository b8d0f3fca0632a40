"""The playground in a real browser: the prompt comes back at once with a panel that says it is generating,
and the panel turns into the answer by itself (htmx polling, under the Content-Security-Policy) once the
worker's result is in."""

import pytest

from tests.fixtures.browser import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_answer_appears_in_the_panel_without_reloading(open_browser, people, base_version, fake_tasks):
    from playwright.sync_api import expect

    from config.celery_app import app

    page = open_browser()
    refused_by_csp = []
    page.on("console", lambda message: refused_by_csp.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in(page, "vera")
    page.goto("/playground/")
    page.fill("#id_prompt", "Policy code for 42?")
    page.click("text=Generate")

    panel = page.locator("[data-testid=playground-answer]")
    expect(panel).to_contain_text("Still generating")
    (task_id,) = [options["task_id"] for name, _, options in fake_tasks.calls if name == "playground_generate"]
    try:
        app.backend.store_result(task_id, {"text": "POL-042", "seconds": 0.4, "source": "eval worker"}, "SUCCESS")
        expect(panel).to_contain_text("POL-042", timeout=10_000)
    finally:
        app.backend.forget(task_id)
    assert refused_by_csp == []
