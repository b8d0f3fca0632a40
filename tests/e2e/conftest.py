"""A real headless Chromium against pytest-django's live server.

The browser and the server share this process; the ORM is called from the test between page actions
(Playwright's sync API keeps an event loop around, hence DJANGO_ALLOW_ASYNC_UNSAFE)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("e2e: /usr/bin/chromium is missing (apt-get install -y chromium; CI's .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings.VAR_DIR


@pytest.fixture
def open_browser(browser, live_server, var_dir):
    """open_browser() -> a fresh page (own cookies) pointed at the live server; closed after the test."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1360, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def showcase(people, skill, base_version, make_candidate):
    """A lineage worth looking at: probes and a second skill scored, a candidate that passed the gate and
    awaits bob (dave asked), one the gate blocked, and a job running."""
    from evaluation.models import EvalRun
    from registry.models import GateResult, PromotionRequest
    from skills.models import DemonstrationSet, EvalCase, EvalSuite, Skill
    from training.models import JobEvent, MetricPoint, TrainingJob

    probes = EvalSuite.objects.create(kind="probes", source="builtin")
    base_version.base_model.probe_suite = probes
    base_version.base_model.save(update_fields=["probe_suite"])
    for i in range(3):
        EvalCase.objects.create(suite=probes, key=f"p{i}", prompt=[{"role": "user", "content": f"probe {i}"}],
                                reference="x", scorer="contains")
    contracts = Skill.objects.create(team=people["legal"], slug="contract-terms", name="Contract terms",
                                     scorer="contains", description="Name the governing clause of a contract.")
    cset = DemonstrationSet.objects.create(skill=contracts, version=1, content_sha256="c" * 64,
                                           format="prompt_jsonl", filename="contracts.jsonl", row_count=60,
                                           train_count=48, eval_count=12, split_seed=3)
    EvalSuite.objects.create(kind="skill", source="split", skill=contracts, demonstration_set=cset)
    codes_suite = skill.eval_suites.get()
    contract_suite = contracts.eval_suites.get()

    def scores(version, codes, contract, probe):
        for suite, score in ((codes_suite, codes), (contract_suite, contract), (probes, probe)):
            EvalRun.objects.create(version=version, suite=suite, status="succeeded", score=score,
                                   passed=round(score * 20), total=20, seconds=42.0)

    scores(base_version, 0.15, 0.10, 1.0)
    good = make_candidate(skill)
    scores(good, 0.85, 0.10, 1.0)
    GateResult.objects.create(candidate=good, baseline=base_version, verdict="pass", reasons=[], flipped=[], rows=[
        {"name": "policy-codes", "before": 0.15, "after": 0.85, "delta": 0.70, "tolerance": 0.0, "verdict": "pass",
         "target": True, "min_gain": 0.2, "passed_before": 3, "passed_after": 17, "total": 20},
        {"name": "contract-terms", "before": 0.10, "after": 0.10, "delta": 0.0, "tolerance": 0.0, "verdict": "pass",
         "target": False, "passed_before": 2, "passed_after": 2, "total": 20},
        {"name": "retention probes", "before": 1.0, "after": 1.0, "delta": 0.0, "tolerance": 0.0, "verdict": "pass",
         "target": False, "passed_before": 20, "passed_after": 20, "total": 20}])
    request = PromotionRequest.objects.create(version=good, requested_by=people["dave"],
                                              comment="Policy codes up from 15% to 85%, nothing lost.")

    blocked = make_candidate(contracts, status="blocked")
    scores(blocked, 0.10, 0.70, 0.85)
    GateResult.objects.create(
        candidate=blocked, baseline=base_version, verdict="block",
        reasons=["retention probes dropped from 100% to 85% (tolerance 0%)"],
        rows=[{"name": "policy-codes", "before": 0.15, "after": 0.10, "delta": -0.05, "tolerance": 0.05,
               "verdict": "pass", "target": False, "passed_before": 3, "passed_after": 2, "total": 20},
              {"name": "contract-terms", "before": 0.10, "after": 0.70, "delta": 0.60, "tolerance": 0.0,
               "verdict": "pass", "target": True, "min_gain": 0.2, "passed_before": 2, "passed_after": 14,
               "total": 20},
              {"name": "retention probes", "before": 1.0, "after": 0.85, "delta": -0.15, "tolerance": 0.0,
               "verdict": "block", "target": False, "passed_before": 20, "passed_after": 17, "total": 20}],
        flipped=[{"suite": "retention probes", "case": "capital-fr", "direction": "pass→fail",
                  "prompt": "What is the capital of France? Answer with one word.", "expected": "Paris",
                  "old_output": "Paris", "new_output": "Clause 14.2 (governing law)", "detail": ""},
                 {"suite": "contract-terms", "case": "line-7", "direction": "fail→pass",
                  "prompt": "Which clause governs termination for convenience?", "expected": "Clause 9",
                  "old_output": "I am not sure which clause.", "new_output": "Clause 9", "detail": ""}])

    job = TrainingJob.objects.create(skill=contracts, demonstration_set=cset, status="running", method="sdft",
                                     parent_version=base_version, step=45, total_steps=120, loss=0.62, kl=0.031,
                                     tokens_per_second=1840.0, eta_seconds=210, worker="gpu-0", attempts=1,
                                     requested_by=people["alice"], config={"method": "sdft", "lora_r": 8})
    for step in range(1, 46):
        MetricPoint.objects.create(job=job, step=step, loss=0.55 + 1.6 / step ** 0.7, kl=0.02 + 0.12 / step)
    JobEvent.objects.create(job=job, kind="requested", message="SDFT training requested for Contract terms.")
    JobEvent.objects.create(job=job, kind="queued", message="Queued for a training worker.")
    JobEvent.objects.create(job=job, kind="running", message="Running on gpu-0 (attempt 1) from v1.")
    return {"good": good, "request": request, "blocked": blocked, "job": job, "contracts": contracts}


# The live-worker journey reuses the pipeline tests' real workers and tiny production model.
from tests.pipeline.conftest import (  # noqa: E402, F401
    artifacts,
    tiny_model_dir,
    tiny_production,
    tokenizer_dir,
    workers,
)
