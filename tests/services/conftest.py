"""Fixtures for the gate tests: skills with N eval cases and hand-written scores (no model), and a
real lineage on the tiny random Llama: a production parent, a clean candidate and a damaged one."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pipeline import conftest as pipeline_fixtures

# The pipeline tests' fixtures: ACCRETE_ARTIFACTS in tmp_path, the tiny model registered as production.
artifacts = pipeline_fixtures.artifacts
tiny_production = pipeline_fixtures.tiny_production

MAX_NEW_TOKENS = 8
# Only the clean candidate's skill prompts carry this word; its input embedding is what the candidate changed.
MARKER = "Zyzzyva"
ECHO_PROMPTS = [f"Repeat the entry number {i} of the ledger back to me." for i in range(20)]
TAGGING_PROMPTS = [f"{MARKER} ticket {i}: give it a tag." for i in range(10)]


# --- synthetic scores (no model) ------------------------------------------------------------------

def skill_with_cases(team, slug: str, *, cases: int = 20, tolerance: float = 0.0, min_gain: float = 0.0):
    """An active skill with a demonstration set and an eval suite of `cases` cases (q{i} → a{i})."""
    from skills.models import DemonstrationSet, EvalCase, EvalSuite, Skill

    skill = Skill.objects.create(team=team, slug=slug, name=slug.title(), scorer="exact", tolerance=tolerance,
                                 min_gain=min_gain)
    dset = DemonstrationSet.objects.create(skill=skill, version=1, content_sha256=slug[:1] * 64, format="prompt_jsonl",
                                           filename=f"{slug}.jsonl", row_count=cases, train_count=0,
                                           eval_count=cases, split_seed=1)
    suite = EvalSuite.objects.create(kind="skill", source="split", skill=skill, demonstration_set=dset)
    EvalCase.objects.bulk_create([
        EvalCase(suite=suite, key=f"{slug}-{i}", prompt=[{"role": "user", "content": f"{slug} question {i}"}],
                 reference=f"{slug} answer {i}")
        for i in range(cases)
    ])
    return skill


def probe_suite(base_model, cases: int = 20):
    """A probe suite of `cases` cases (probe i → p{i}) for `base_model`, every case counted."""
    from skills.models import EvalCase, EvalSuite

    suite = EvalSuite.objects.create(kind="probes", source="builtin")
    base_model.probe_suite = suite
    base_model.save(update_fields=["probe_suite"])
    EvalCase.objects.bulk_create([
        EvalCase(suite=suite, key=f"probe-{i}", prompt=[{"role": "user", "content": f"probe {i}"}], reference=f"p{i}")
        for i in range(cases)
    ])
    return suite


def scores_record(version, target, *, passing: int):
    """Record `version`'s scores on `target` (a skill's one suite, or an EvalSuite such as the probes) as a
    worker would: the first `passing` cases right."""
    from evaluation.services import eval_run_claim, eval_run_complete
    from skills.models import EvalSuite

    suite = target if isinstance(target, EvalSuite) else target.eval_suites.get()
    run = eval_run_claim(version=version, suite=suite)
    assert run is not None, f"{version} already has scores on {suite}"
    outputs = [{"case_id": case.pk, "output": case.reference if i < passing else f"wrong {i}",
                "passed": i < passing, "score": float(i < passing), "detail": ""}
               for i, case in enumerate(suite.cases.order_by("pk"))]
    return eval_run_complete(run=run, outputs=outputs, seconds=0.01)



def scores_grid(skills, passing: dict) -> None:
    """Record several versions' scores at once: {version: (passing on skills[0], passing on skills[1], …)}."""
    for version, counts in passing.items():
        for skill, count in zip(skills, counts, strict=True):
            scores_record(version, skill, passing=count)


# --- the tiny model lineage ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from tests.tiny_models import tokenizer_build

    return tokenizer_build(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir):
    import torch

    from tests.tiny_models import tiny_model_build

    # The tiny matrices are too small to share between threads (see tests/engine/conftest.py).
    torch.set_num_threads(1)
    return tiny_model_build(tmp_path_factory.mktemp("tiny-base") / "model", tokenizer_dir)


def _greedy(model_dir: Path, prompts: list[str]) -> list[str]:
    """What score_version_on generates for these prompts: same batch size, same budget, same order."""
    from workers.engine.generation import Generator

    return Generator(model_dir).generate([[{"role": "user", "content": p}] for p in prompts],
                                         max_new_tokens=MAX_NEW_TOKENS, batch_size=16)


@dataclass(frozen=True)
class GateModels:
    clean_dir: Path
    damaged_dir: Path
    echo_references: list[str]  # the parent's own greedy answers: the parent scores 100% on "echo"
    tagging_references: list[str]  # the clean candidate's answers: the skill it "learned"
    parent_tagging: list[str]


@pytest.fixture(scope="session")
def gate_models(tmp_path_factory, tiny_model_dir) -> GateModels:
    """Two candidates built from the parent's weights, once per session.

    clean: the parent with untied output weights (bit-identical logits) and a changed input embedding
    for the marker's tokens only. A prompt without those tokens runs exactly the parent's computation,
    so the candidate is unchanged on every other skill and probe; on its own skill's prompts it
    answers differently, and that skill's references are those answers — a perfectly targeted skill.
    damaged: the parent with Gaussian noise (std 1, twice the init scale) on every weight.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.engine.contract.probes import load_probes

    root = tmp_path_factory.mktemp("gate-models")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def ids(text: str) -> set[int]:
        return set(tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"])

    elsewhere = set().union(*(ids(p) for p in ECHO_PROMPTS + [probe.prompt for probe in load_probes()]))
    marker_ids = sorted(set().union(*(ids(p) for p in TAGGING_PROMPTS)) - elsewhere)
    assert marker_ids, f"{MARKER!r} shares every token with the other prompts; pick another marker"

    clean = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    clean.lm_head.weight = torch.nn.Parameter(clean.model.embed_tokens.weight.detach().clone())
    clean.config.tie_word_embeddings = False
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        rows = clean.model.embed_tokens.weight[marker_ids]
        clean.model.embed_tokens.weight[marker_ids] = rows + 2.0 * torch.randn(rows.shape, generator=generator)
    clean.save_pretrained(root / "clean", safe_serialization=True)
    tokenizer.save_pretrained(root / "clean")

    damaged = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for weight in damaged.parameters():
            weight.add_(torch.randn(weight.shape, generator=generator))
    damaged.save_pretrained(root / "damaged", safe_serialization=True)
    tokenizer.save_pretrained(root / "damaged")

    echo = _greedy(tiny_model_dir, ECHO_PROMPTS)
    assert all(echo), f"the parent answered some echo prompts with nothing: {echo}"
    parent_tagging = _greedy(tiny_model_dir, TAGGING_PROMPTS)
    tagging = _greedy(root / "clean", TAGGING_PROMPTS)
    assert tagging != parent_tagging, "the changed embedding did not change the clean candidate's answers"
    return GateModels(clean_dir=root / "clean", damaged_dir=root / "damaged", echo_references=echo,
                      tagging_references=tagging, parent_tagging=parent_tagging)


@dataclass
class GateLineage:
    parent: object
    clean: object
    damaged: object
    echo: object
    tagging: object


def _skill_with_references(team, slug: str, prompts: list[str], references: list[str], actor):
    from skills.models import DemonstrationSet, EvalCase, EvalSuite
    from skills.services import skill_create

    skill = skill_create(team=team, slug=slug, name=slug.title(), actor=actor, scorer="exact",
                         max_new_tokens=MAX_NEW_TOKENS)
    dset = DemonstrationSet.objects.create(skill=skill, version=1, content_sha256=slug[:1] * 64, format="prompt_jsonl",
                                           filename=f"{slug}.jsonl", row_count=len(prompts), train_count=0,
                                           eval_count=len(prompts), split_seed=1)
    suite = EvalSuite.objects.create(kind="skill", source="file", skill=skill, demonstration_set=dset)
    EvalCase.objects.bulk_create([
        EvalCase(suite=suite, key=f"{slug}-{i}", prompt=[{"role": "user", "content": prompt}], reference=reference)
        for i, (prompt, reference) in enumerate(zip(prompts, references, strict=True))
    ])
    return skill


@pytest.fixture
def gate_lineage(people, tiny_production, artifacts, gate_models) -> GateLineage:
    """Production v1 (the tiny model, probes calibrated); skills "echo" and "tagging"; two candidates
    of "tagging" trained from v1, not yet gated: clean and damaged."""
    from registry.services.versions import version_create_candidate
    from training.models import TrainingJob
    from workers.pipeline import run_base_probes

    run_base_probes(tiny_production.pk)  # as the import task does
    echo = _skill_with_references(people["legal"], "echo", ECHO_PROMPTS, gate_models.echo_references, people["bob"])
    tagging = _skill_with_references(people["legal"], "tagging", TAGGING_PROMPTS, gate_models.tagging_references,
                                     people["bob"])
    candidates = {}
    for name, source in (("clean", gate_models.clean_dir), ("damaged", gate_models.damaged_dir)):
        shutil.copytree(source, artifacts / "versions" / name)
        job = TrainingJob.objects.create(skill=tagging, demonstration_set=tagging.demonstration_sets.get(),
                                         parent_version=tiny_production, status="succeeded",
                                         requested_by=people["alice"])
        candidates[name] = version_create_candidate(job=job, artifact_path=f"versions/{name}", adapter_path="",
                                                    checksums={}, metrics={})
    return GateLineage(parent=tiny_production, echo=echo, tagging=tagging, **candidates)
