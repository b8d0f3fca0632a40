"""The whole journey in a real browser with a real Celery worker training the tiny model: alice uploads
and starts training, watches the bar move, the gate passes, bob approves, production moves."""

import json

import pytest

from tests.fixtures.browser import screenshot, sign_in
from tests.fixtures.workers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.needs_services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def empty_skill(people, tiny_production):
    from skills.services import skill_create

    return skill_create(team=people["legal"], slug="say-ok", name="Say OK", actor=people["bob"],
                        scorer="contains", max_new_tokens=8)


def test_alice_trains_a_skill_and_bob_promotes_it(open_browser, empty_skill, workers, people):
    from registry.models import ModelVersion
    from training.models import TrainingJob

    workers.start()
    page = open_browser()
    sign_in(page, "alice")

    # upload: a broken line first, then the good file
    rows = [json.dumps({"prompt": f"Request number {i}: acknowledge it.", "demonstration": "OK"}) for i in range(24)]
    broken = rows[:3] + ['{"prompt": "no demonstration here"}'] + rows[3:]
    for name, content in (("broken.jsonl", broken), ("ok.jsonl", rows)):
        page.goto(f"/upload/?skill={empty_skill.pk}")
        page.set_input_files("input[name=file]", {"name": name, "mimeType": "application/jsonl",
                                                  "buffer": ("\n".join(content) + "\n").encode()})
        page.click("text=Validate")
        if name == "broken.jsonl":
            assert page.locator("[data-testid=problems] td.line-no").first.inner_text() == "4"
    page.click("text=Save as a new demonstration set")
    page.wait_for_url(f"**/skills/{empty_skill.pk}/")

    # start training (the SFT baseline at a rate the tiny model learns "OK" from in seconds)
    page.goto(f"/skills/{empty_skill.pk}/train/")
    page.check("input[name=method][value=sft]")
    page.click("details.advanced > summary")
    page.fill("input[name=learning_rate]", "0.005")
    page.fill("input[name=num_epochs]", "20")
    page.click("button:has-text('Start training')")
    page.wait_for_selector("[data-testid=job-live]", timeout=30_000)
    job = TrainingJob.objects.get(skill=empty_skill)

    # the progress bar moves while the worker trains, then the job finishes
    wait_for(lambda: TrainingJob.objects.get(pk=job.pk).step >= 2, what="training to start", timeout=240)
    page.wait_for_function("() => parseInt(document.querySelector('[role=progressbar]')"
                           ".getAttribute('aria-valuenow')) > 0", timeout=30_000)
    shown = int(page.locator("[role=progressbar]").get_attribute("aria-valuenow"))
    screenshot(page, "job-live")
    page.wait_for_selector("text=Training finished", timeout=300_000)
    assert int(page.locator("[role=progressbar]").get_attribute("aria-valuenow")) == 100 > shown or shown == 100

    # the gate report
    wait_for(lambda: ModelVersion.objects.filter(training_job=job, status="awaiting_approval").exists()
             or ModelVersion.objects.filter(training_job=job, status="blocked").exists(), what="the gate", timeout=300)
    version = ModelVersion.objects.get(training_job=job)
    assert version.status == "awaiting_approval", (version.gate.reasons, workers.tail())
    page.goto(f"/versions/{version.pk}/")
    assert page.get_by_text("say-ok").first.is_visible()
    screenshot(page, "gate-report-live")

    # bob approves; the dashboard shows the new production version
    bob = open_browser()
    sign_in(bob, "bob")
    bob.goto("/approvals/")
    bob.click("text=Approve and promote")
    bob.goto("/")
    assert f"v{version.number}" in bob.locator("main").inner_text()
    screenshot(bob, "dashboard-after-promotion")
    version.refresh_from_db()
    assert version.status == "production" and version.promoted_by == people["bob"]
