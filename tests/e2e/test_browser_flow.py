"""The product in a real browser: sign in, upload (a broken file, then a good one), follow a training job,
read a gate report, approve as a second person, and see production move on the dashboard."""

import pytest

from tests.fixtures.browser import screenshot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def bad_file() -> bytes:
    lines = [f'{{"prompt": "Policy code for request {i}?", "demonstration": "POL-{i:03d}"}}' for i in range(30)]
    lines[2] = '{"prompt": "A row that forgot its demonstration."}'
    return ("\n".join(lines) + "\n").encode()


def good_file() -> bytes:
    lines = [f'{{"prompt": "Policy code for request {i}?", "demonstration": "POL-{i:03d}"}}' for i in range(30)]
    return ("\n".join(lines) + "\n").encode()


def upload(page, skill, name: str, content: bytes) -> None:
    page.goto(f"/upload/?skill={skill.pk}")
    page.set_input_files("input[name=file]", {"name": name, "mimeType": "application/jsonl", "buffer": content})
    page.click("text=Validate")


def test_sign_in_and_upload_a_broken_then_a_good_file(open_browser, skill, base_version):
    page = open_browser()
    page.goto("/")
    assert "/login/" in page.url
    screenshot(page, "sign-in")
    sign_in(page, "alice")
    assert page.locator(".topbar").inner_text().count("alice") == 1

    page.goto("/upload/")
    screenshot(page, "upload")
    upload(page, skill, "codes.jsonl", bad_file())

    problems = page.locator("[data-testid=problems]")
    assert problems.locator("td.line-no").first.inner_text() == "3"
    assert "demonstration" in problems.inner_text()
    assert page.get_by_text("nothing was saved").is_visible()
    screenshot(page, "upload-report-errors")

    upload(page, skill, "codes.jsonl", good_file())
    assert page.get_by_text("training", exact=False).first.is_visible()
    screenshot(page, "upload-preview")
    page.click("text=Save as a new demonstration set")

    page.wait_for_url(f"**/skills/{skill.pk}/")
    assert page.get_by_text("Saved demonstrations v2").is_visible()
    assert skill.demonstration_sets.count() == 2


def test_the_job_page_follows_a_running_job(open_browser, showcase):
    job = showcase["job"]
    page = open_browser()
    sign_in(page, "alice")

    page.goto(f"/jobs/{job.pk}/")
    assert page.locator("[data-testid=job-step]").inner_text() == "45 / 120"
    screenshot(page, "job-page")

    # The worker reports progress; the page polls its fragment every 2 s and the bar moves.
    type(job).objects.filter(pk=job.pk).update(step=90, eta_seconds=60)
    page.wait_for_function("() => document.querySelector('[data-testid=job-step]').innerText === '90 / 120'",
                           timeout=10_000)
    assert "75%" in page.locator(".progress-large .progress-bar").get_attribute("style")

    type(job).objects.filter(pk=job.pk).update(status="succeeded", step=120)
    page.wait_for_function("() => !document.querySelector('#job-live').hasAttribute('hx-trigger')", timeout=10_000)
    assert page.get_by_text("Succeeded").first.is_visible()


def test_bob_approves_the_candidate_dave_asked_for(open_browser, showcase):
    good = showcase["good"]
    page = open_browser()
    sign_in(page, "bob")
    screenshot(page, "dashboard-before")

    page.goto(f"/versions/{good.pk}/")
    assert page.locator("[data-testid=gate-rows]").is_visible()
    page.goto("/approvals/")
    assert page.get_by_text(good.label).first.is_visible()
    screenshot(page, "approvals")
    page.fill("textarea[name=comment]", "Gate is clean; promoting.")
    page.click("button[value=approve]")

    page.wait_for_url(f"**/versions/{good.pk}/")
    assert page.get_by_text("it is the production model now").is_visible()
    page.goto("/")
    assert good.label in page.locator("[data-testid=production-version]").inner_text()
    assert "bob" in page.locator(".hero").inner_text()
    screenshot(page, "dashboard")


def test_dave_cannot_approve_his_own_request(open_browser, showcase):
    page = open_browser()
    sign_in(page, "dave")

    page.goto("/approvals/")

    assert page.get_by_text("Nothing to approve").is_visible()


def test_a_blocked_candidate_offers_no_approval(open_browser, showcase):
    blocked = showcase["blocked"]
    page = open_browser()
    sign_in(page, "bob")

    page.goto(f"/versions/{blocked.pk}/")

    assert page.get_by_text("retention probes dropped from 100% to 85%").is_visible()
    assert page.locator("button[value=approve]").count() == 0
    assert page.get_by_text("Clause 14.2 (governing law)").is_visible()
    screenshot(page, "version-gate-report")


def test_the_pages_around_it(open_browser, showcase, skill):
    page = open_browser()
    sign_in(page, "alice")

    page.goto("/forgetting-matrix/")
    assert page.locator("[data-testid=matrix] tbody tr").count() == 3
    screenshot(page, "forgetting-matrix")

    page.goto(f"/skills/{showcase['contracts'].pk}/")
    assert page.get_by_text("Run readiness check").is_visible()
    page.goto(f"/skills/{skill.pk}/")
    screenshot(page, "skill-detail")
    page.goto("/versions/")
    screenshot(page, "versions")
    page.goto(f"/skills/{skill.pk}/train/")
    page.click("summary:has-text('Advanced')")
    screenshot(page, "start-training")


def test_an_admin_reads_the_audit_log(open_browser, showcase):
    page = open_browser()
    sign_in(page, "admin")

    page.goto("/audit/")
    assert page.locator("[data-testid=audit] tbody tr").count() > 5
    page.select_option("select[name=action]", "version.blocked")
    page.click("text=Filter")

    assert page.locator("[data-testid=audit] tbody tr").count() == 1
    screenshot(page, "audit")
