"""The gate's faster path (#16): each version scored in one pass over all its suites, its weights loaded once
per gate, the parent's scores reused, the parent scored on a second eval worker while the gate task scores the
candidate — and the same answers, scores and verdicts as the plain path.

The first half runs the pipeline in this process on the tiny random Llama; the second through real Celery
worker processes (Redis, PostgreSQL)."""

import re
from pathlib import Path

import pytest

from evaluation.models import CaseResult, EvalRun
from registry.models import ModelVersion
from skills.models import EvalSuite
from tests.fixtures.gate import TAGGING_PROMPTS
from tests.fixtures.skills import skill_with_cases
from tests.fixtures.workers import wait_for

SHORT_MAX_NEW_TOKENS = 3  # the gate fixture's skills answer in 8 tokens: a third budget in the same pass
# Words of the echo prompts only: the clean candidate answers them exactly as its parent does.
SHORT_PROMPTS = [f"Repeat the ledger entry number {i} to me." for i in range(12)]


@pytest.fixture
def model_use(monkeypatch, artifacts):
    """What a gate does with weights: each Generator constructed (its folder under the artifacts) and each
    generate call (the folder, how many prompts)."""
    from workers.engine.generation import Generator

    use = {"loads": [], "passes": []}
    init, generate = Generator.__init__, Generator.generate

    def counting_init(self, model_dir, *args, **kwargs):
        self.folder = str(Path(model_dir).relative_to(artifacts))
        use["loads"].append(self.folder)
        init(self, model_dir, *args, **kwargs)

    def counting_generate(self, prompts, *args, **kwargs):
        use["passes"].append((getattr(self, "folder", None), len(prompts)))
        return generate(self, prompts, *args, **kwargs)

    monkeypatch.setattr(Generator, "__init__", counting_init)
    monkeypatch.setattr(Generator, "generate", counting_generate)
    return use


@pytest.fixture
def three_skills(gate_lineage, people, tiny_model_dir):
    """The gate lineage with a third skill whose answers take 3 tokens: the parent's own answers, so the parent
    and the clean candidate score 100% on it."""
    from workers.engine.generation import Generator

    answers = Generator(tiny_model_dir).generate([[{"role": "user", "content": p}] for p in SHORT_PROMPTS],
                                                 max_new_tokens=SHORT_MAX_NEW_TOKENS, batch_size=1)
    skill_with_cases(people["legal"], "short", cases=list(zip(SHORT_PROMPTS, answers, strict=True)),
                     max_new_tokens=SHORT_MAX_NEW_TOKENS, source="file")
    return gate_lineage


def _rows(version) -> dict:
    return {row["name"]: (row["before"], row["after"], row["verdict"]) for row in version.gate.rows}


def _expected_rows(gate_models) -> dict:
    """The clean candidate's gate: unchanged on echo, short and the probes; tagging learned."""
    tagging_before = sum(p == t for p, t in zip(gate_models.parent_tagging, gate_models.tagging_references,
                                                strict=True)) / len(TAGGING_PROMPTS)
    return {"echo": (1.0, 1.0, "pass"), "tagging": (tagging_before, 1.0, "pass"),
            "retention probes": (0.0, 0.0, "pass")}


# --- in this process ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_gate_loads_and_runs_each_version_once_over_all_its_suites(three_skills, model_use):
    from workers.pipeline import run_candidate_gate

    # given a parent scored on the probes only (as an import leaves it), and three skills with two budgets
    # when the clean candidate is gated
    assert run_candidate_gate(three_skills.clean.pk) == "pass"
    # then each version was loaded once and answered every case of its suites in one generate call
    # (the parent: echo 20 + tagging 10 + short 12; the candidate also its probes, none of which count)
    assert model_use["loads"] == ["base/tiny", "versions/clean"]
    assert model_use["passes"] == [("base/tiny", 42), ("versions/clean", 42)]
    clean = ModelVersion.objects.get(pk=three_skills.clean.pk)
    assert _rows(clean)["short"] == (1.0, 1.0, "pass")
    # and a run's seconds are the pass's, split by its share of the cases
    runs = {run.suite.skill.slug: run for run in clean.eval_runs.filter(suite__kind="skill")}
    assert runs["echo"].seconds > 0 and runs["echo"].seconds == pytest.approx(2 * runs["tagging"].seconds)


@pytest.mark.django_db
def test_the_gates_one_pass_answers_what_each_suite_scored_alone_answers(three_skills, artifacts):
    from workers.engine.evaluation import evaluate
    from workers.engine.generation import Generator
    from workers.pipeline import run_candidate_gate, suite_for_engine

    # when both candidates are gated (the parent scored once, in one pass, for the first)
    run_candidate_gate(three_skills.clean.pk)
    run_candidate_gate(three_skills.damaged.pk)
    # then every stored answer is what the plain path — each suite alone, with its own budget — answers
    runs = EvalRun.objects.filter(version__parent__isnull=False) | EvalRun.objects.filter(
        version=three_skills.parent, suite__kind="skill")
    compared = 0
    for run in runs.select_related("version", "suite", "suite__skill"):
        suite = suite_for_engine(run.version, run.suite)
        plain = evaluate(Generator(artifacts / run.version.artifact_path), suite.items, suite.scorer_kind,
                         suite.scorer_options, max_new_tokens=suite.max_new_tokens, batch_size=16)
        stored = {r.case_id: (r.output, r.passed) for r in CaseResult.objects.filter(eval_run=run)}
        assert stored == {int(p.case_id): (p.output, p.passed) for p in plain}, (run.version, run.suite)
        compared += len(plain)
    assert compared == 3 * 42  # parent, clean, damaged: echo 20 + tagging 10 + short 12 (no probe counts)


@pytest.mark.django_db
def test_a_parent_whose_scores_exist_is_not_loaded(three_skills, model_use):
    from workers.pipeline import run_candidate_gate

    # given the parent was scored by the clean candidate's gate
    run_candidate_gate(three_skills.clean.pk)
    model_use["loads"].clear()
    model_use["passes"].clear()
    # when its damaged sibling is gated, handing the parent's half to the eval queue
    sent = []
    assert run_candidate_gate(three_skills.damaged.pk, score_parent_elsewhere=sent.append) == "block"
    # then nothing was queued and only the damaged weights were loaded, for one pass
    assert sent == []
    assert model_use["loads"] == ["versions/damaged"] and model_use["passes"] == [("versions/damaged", 42)]


@pytest.mark.django_db
def test_a_gate_that_queued_the_parents_half_scores_the_candidate_first_then_what_is_left(three_skills, model_use):
    from workers.pipeline import run_candidate_gate, run_gate_parent_scores

    # when the gate task queues the parent's half and no other worker takes it
    sent = []
    verdict = run_candidate_gate(three_skills.clean.pk, score_parent_elsewhere=sent.append, wait_s=5)
    # then the gate scored the candidate, then the parent itself, each once, and decided as the plain gate does
    assert sent == [three_skills.clean.pk] and verdict == "pass"
    assert model_use["loads"] == ["versions/clean", "base/tiny"]
    assert model_use["passes"] == [("versions/clean", 42), ("base/tiny", 42)]
    # and the queued half, run afterwards, finds the gate decided: it scores and loads nothing
    assert run_gate_parent_scores(three_skills.clean.pk) == []
    assert model_use["loads"] == ["versions/clean", "base/tiny"]


@pytest.mark.django_db
def test_the_parents_half_scores_only_the_suites_the_parent_lacks(three_skills, model_use):
    from registry.services.gates import gate_start
    from workers.pipeline import run_gate_parent_scores

    # given a gate that started (the parent has its probe scores from the import)
    clean = gate_start(version=three_skills.clean)
    # when a second eval worker runs the parent's half
    scored = run_gate_parent_scores(clean.pk)
    # then it scored the three skills in one pass of the parent, and a second delivery does nothing
    assert sorted(EvalSuite.objects.get(pk=pk).skill.slug for pk in scored) == ["echo", "short", "tagging"]
    assert model_use["passes"] == [("base/tiny", 42)]
    assert run_gate_parent_scores(clean.pk) == [] and model_use["loads"] == ["base/tiny"]


# --- real worker processes ---------------------------------------------------------------------------


def _ready(workers, n: int) -> None:
    wait_for(lambda: sum(" ready." in log.read_text() for log in workers.logs if log.exists()) >= n,
             what=f"{n} worker(s) ready", timeout=120)


@pytest.mark.needs_services
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("eval_workers", [1, 2])
def test_a_gate_on_real_eval_workers(gate_lineage, gate_models, workers, eval_workers):
    from workers.tasks import gate_candidate

    # given one or two eval workers up, and a parent that lacks its scores on both skills
    for i in range(eval_workers):
        workers.start(queues="eval,default", name=f"eval{i}")
    _ready(workers, eval_workers)
    clean = gate_lineage.clean
    # when the clean candidate's gate is queued
    gate_candidate.delay(clean.pk)
    wait_for(lambda: ModelVersion.objects.get(pk=clean.pk).status not in {"candidate", "evaluating"},
             what="the gate", timeout=300)
    # then the verdict and every score are the plain gate's, with one eval worker or two
    clean.refresh_from_db()
    assert clean.status == "awaiting_approval", (clean.gate_error, workers.tail())
    assert _rows(clean) == _expected_rows(gate_models)
    parent_runs = list(EvalRun.objects.filter(version=gate_lineage.parent, suite__kind="skill"))
    candidate_runs = list(EvalRun.objects.filter(version=clean))
    assert len(parent_runs) == 2 and len(candidate_runs) == 3
    assert all(run.status == "succeeded" for run in parent_runs + candidate_runs)
    # and the queued parent half ran: on the second worker while the candidate was scored (their runs overlap
    # in time), or with one worker after the gate, finding nothing left to score
    half = wait_for(lambda: re.search(r"score_gate_parent\[.*\] succeeded in [\d.]+s: (\[.*\])", workers.tail()),
                    what="the parent's half")
    overlap = (max(run.created_at for run in parent_runs) < min(run.finished_at for run in candidate_runs)
               and max(run.created_at for run in candidate_runs) < min(run.finished_at for run in parent_runs))
    if eval_workers == 2:
        assert overlap, [(r.version_id, r.suite_id, r.created_at, r.finished_at) for r in parent_runs + candidate_runs]
        assert half.group(1) == str(sorted(run.suite_id for run in parent_runs)), workers.tail()
    else:
        assert not overlap and half.group(1) == "[]", workers.tail()
