"""Hostile input through the browser: every parser path — upload files, eval files, file names, scorer
options, form fields, query parameters — refuses what it cannot use, naming the line or the field, and never
answers 500 (the test client re-raises any exception a view lets through, so a crash fails the test), saves
half of anything or leaves a file behind; valid files still go through. The files are the shipped demo
files, mutated (tests/fixtures/skills.py: `hostile_corpus`)."""

import json
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st

from skills.models import Demonstration, DemonstrationSet, EvalCase, EvalSuite, Skill
from tests.fixtures.backends import ON_POSTGRES
from tests.fixtures.skills import hostile_corpus, jsonl
from workers.engine.contract.scoring import validate_options

CORPUS = hostile_corpus()


def saved() -> tuple[int, int, int, int]:
    return (DemonstrationSet.objects.count(), Demonstration.objects.count(), EvalSuite.objects.count(),
            EvalCase.objects.count())


def uploads(var_dir) -> list[str]:
    folder = var_dir / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def preview(client, skill, name: str, content: bytes, eval_file: tuple[str, bytes] | None = None):
    data = {"skill": skill.pk, "file": SimpleUploadedFile(name, content)}
    if eval_file is not None:
        data["eval_file"] = SimpleUploadedFile(*eval_file)
    return client.post(reverse("upload"), data)


def test_the_corpus_holds_200_mutated_files_of_every_kind():
    assert len(CORPUS) >= 200
    assert {m.kind for m in CORPUS} >= {"deep nesting", "long integer", "lone surrogate", "NaN or Infinity",
                                         "NUL escape", "NUL byte", "overlong line", "CSV with hostile metadata",
                                         "as shipped", "CSV"}
    assert sum(m.line is None for m in CORPUS) >= 25


def test_each_mutated_demo_file_is_refused_naming_its_line_or_else_saved(login, skill, var_dir):
    # given alice, a contributor, and 220 files: the demo files, most of them made hostile
    alice = login("alice")
    failures = []
    for mutant in CORPUS:
        before = saved()
        # when she uploads one
        response = preview(alice, skill, mutant.name, mutant.content)
        # then a hostile file is refused with its line named and nothing kept; a valid one is saved
        problems = response.context["outcome"].report.problems
        if mutant.line is None:
            confirmed = alice.post(reverse("upload_confirm"), {"token": alice.session.get("pending_upload", {}).get("token")})
            if response.status_code != 200 or confirmed.status_code != 302 or saved()[0] != before[0] + 1:
                failures.append(f"{mutant}: not saved ({response.status_code}, {[str(p) for p in problems[:2]]})")
        elif response.status_code != 422 or mutant.line not in [p.line for p in problems]:
            failures.append(f"{mutant}: {response.status_code}, problems on lines {[p.line for p in problems]}")
        elif saved() != before:
            failures.append(f"{mutant}: refused, but rows were saved")
        if uploads(var_dir):
            failures.append(f"{mutant}: left {uploads(var_dir)} under VAR_DIR/uploads")
    assert failures == []
    assert "pending_upload" not in alice.session


def test_each_mutated_demo_file_as_an_eval_file_is_refused_naming_its_line_or_else_accepted(login, skill, var_dir,
                                                                                           good_file):
    alice = login("alice")
    failures = []
    for mutant in CORPUS[::3]:
        before = saved()
        response = preview(alice, skill, "train.jsonl", good_file, eval_file=(mutant.name, mutant.content))
        eval_report = response.context["outcome"].eval_report
        if mutant.line is None:
            if response.status_code != 200:
                failures.append(f"{mutant}: refused as an eval file: {[str(p) for p in eval_report.problems[:2]]}")
            alice.post(reverse("upload_cancel"))
        elif response.status_code != 422 or mutant.line not in [p.line for p in eval_report.problems]:
            failures.append(f"{mutant}: {response.status_code}, problems on lines "
                            f"{[p.line for p in eval_report.problems]}")
        if saved() != before or uploads(var_dir):
            failures.append(f"{mutant}: something was kept")
    assert failures == []


def _multipart(skill_id: int, disposition: str, content: bytes) -> tuple[bytes, str]:
    """A multipart body written by hand, with the file's Content-Disposition as given (the test client would
    clean a hostile name itself)."""
    boundary = "AccreteBoundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"skill\"\r\n\r\n{skill_id}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("disposition", [
    'filename="a\x01b\x7fc.jsonl"', "filename*=UTF-8''a%00b.jsonl", "filename*=UTF-8''a%ED%A0%80b.jsonl",
    "filename*=UTF-8''%E2%80%AEgpj.jsonl", "filename*=UTF-8''%0A%0D.jsonl", 'filename="..\\\\..\\\\x.jsonl"',
    'filename="../../etc/x.jsonl"', 'filename="' + "n" * 400 + '.jsonl"', 'filename=""', "filename*=UTF-8''%2E%2E",
], ids=["control", "NUL", "surrogate bytes", "bidi override", "line breaks", "backslashes", "slashes", "400 long",
        "empty", "dot dot"])
def test_an_odd_file_name_is_cleaned_or_refused_never_a_crash(login, skill, good_file, var_dir, disposition):
    alice = login("alice")
    body, content_type = _multipart(skill.pk, disposition, good_file)

    response = alice.generic("POST", reverse("upload"), body, content_type=content_type)

    assert response.status_code in (200, 400, 422)
    if response.status_code == 200:  # Django's parser cleaned it: what is kept is a plain, short label
        alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]})
        name = DemonstrationSet.objects.get(skill=skill, version=2).filename
        assert name and len(name) <= 255 and "/" not in name and "\\" not in name
        assert name.isprintable() and name.encode("utf-8")
    else:
        assert saved()[0] == 1 and uploads(var_dir) == []


def skill_form(**overrides) -> dict:
    return {"slug": "contract-terms", "name": "Contract terms", "description": "", "scorer": "exact",
            "scorer_options": "", "teacher_style": "inline", "tolerance": "0", "min_gain": "0.1",
            "max_new_tokens": "64", **overrides}


HOSTILE_OPTIONS = [
    ("exact", "[" * 4000, "nested more than 32 levels deep"),
    ("exact", "[" * 100_000, "at most 5000 characters"),
    ("token_f1", '{"threshold": ' + "9" * 4400 + "}", "4,400 digits"),
    ("token_f1", '{"threshold": NaN}', "NaN is not a JSON value"),
    ("numeric", '{"abs_tol": Infinity}', "Infinity is not a JSON value"),
    ("numeric", '{"abs_tol": 1e400}', "out of range"),
    ("numeric", '{"abs_tol": -1}', "finite number >= 0"),
    ("regex", '{"pattern": "\\ud800"}', "half of a surrogate pair"),
    ("json_fields", '{"fields": ["a\\u0000b"]}', "NUL character"),
    ("regex", '{"pattern": "a{99999999999}"}', "too complex"),
    ("regex", '{"pattern": "' + "x" * 1200 + '"}', "at most 1,000"),
    ("regex", '{"\\udfff": 1}', "half of a surrogate pair"),
    ("multiple_choice", '{"letters": ["A", "B"]}', "must be str"),
]


@pytest.mark.parametrize(("scorer", "options", "message"), HOSTILE_OPTIONS,
                         ids=[f"{scorer}: {message}" for scorer, _, message in HOSTILE_OPTIONS])
def test_hostile_scorer_options_are_refused_on_the_field(login, people, scorer, options, message):
    response = login("bob").post(reverse("skill_new"), skill_form(scorer=scorer, scorer_options=options))

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["scorer_options"] and message in errors["scorer_options"][0]
    assert not Skill.objects.filter(slug="contract-terms").exists()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
OPTION_TEXTS = st.one_of(
    st.text(max_size=200),
    st.builds(json.dumps, st.dictionaries(st.sampled_from(["threshold", "pattern", "fields", "letters", "abs_tol",
                                                           "rel_tol", "position", "case_sensitive", "x"]),
                                          JSON_VALUES, max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(scorer=st.sampled_from(["exact", "regex", "json_fields", "multiple_choice", "numeric", "token_f1"]),
       raw=OPTION_TEXTS)
def test_any_scorer_options_text_is_refused_on_the_field_or_storable(scorer, raw):
    from frontend.forms import SkillCreateForm

    form = SkillCreateForm({"slug": "s", "name": "S", "scorer": scorer, "scorer_options": raw,
                            "teacher_style": "inline", "tolerance": "0", "min_gain": "0", "max_new_tokens": "8"})
    if not form.is_valid():
        assert set(form.errors) == {"scorer_options"}
        return
    options = form.cleaned_data["scorer_options"]
    try:
        validate_options(scorer, options)  # what skill_create asks next: only ValueError may come out
    except ValueError as exc:
        assert str(exc).encode("utf-8")  # the message itself can be shown
        return
    json.dumps(options, allow_nan=False).encode("utf-8")  # what is accepted can be stored


@pytest.mark.parametrize("value", ["abc", "9" * 30, "9" * 5000, "-1", "1e400", "\x00", "%ED%A0%80", "[]"])
def test_a_hostile_skill_parameter_is_a_refusal(login, skill, good_file, var_dir, value):
    alice = login("alice")

    shown = alice.get(f"{reverse('upload')}?skill={value}")
    posted = alice.post(reverse("upload"), {"skill": value, "file": SimpleUploadedFile("a.jsonl", good_file)})

    assert shown.status_code == 200
    assert posted.status_code in (400, 404)
    assert saved()[0] == 1 and uploads(var_dir) == []


@pytest.mark.parametrize("token", ["", "../../etc/passwd", "0" * 32, "A" * 32, "\x00", "9" * 5000, "{}"])
def test_a_hostile_upload_token_is_not_pending(login, skill, token):
    response = login("alice").post(reverse("upload_confirm"), {"token": token})

    assert response.status_code == 302 and response.url == reverse("upload")
    assert saved()[0] == 1


# --- confirming twice: the saved set, not an error ------------------------------------------------------

def test_confirming_the_same_upload_twice_shows_the_set_it_saved(login, skill, good_file, var_dir):
    alice = login("alice")
    preview(alice, skill, "codes.jsonl", good_file)
    token = alice.session["pending_upload"]["token"]

    first = alice.post(reverse("upload_confirm"), {"token": token})
    second = alice.post(reverse("upload_confirm"), {"token": token}, follow=True)

    assert first.status_code == 302 and first.url == reverse("skill_detail", args=[skill.pk])
    assert second.redirect_chain == [(reverse("skill_detail", args=[skill.pk]), 302)]
    assert "already saved as demonstrations v2" in second.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 2
    assert DemonstrationSet.objects.get(upload_token=token).version == 2
    assert uploads(var_dir) == []


def test_another_team_cannot_learn_of_a_saved_upload_by_its_token(login, skill, good_file):
    alice = login("alice")
    preview(alice, skill, "codes.jsonl", good_file)
    token = alice.session["pending_upload"]["token"]
    alice.post(reverse("upload_confirm"), {"token": token})

    response = login("carol").post(reverse("upload_confirm"), {"token": token})

    assert response.status_code == 404


@pytest.mark.skipif(not ON_POSTGRES, reason="simultaneous confirmations need PostgreSQL (SQLite serialises writers)")
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_confirmations_save_one_set_and_both_see_it(people, skill, good_file, var_dir):
    # given a validated upload, and the same session in two tabs (a double click on Save)
    alice = Client()
    alice.force_login(people["alice"])
    preview(alice, skill, "codes.jsonl", good_file)
    token = alice.session["pending_upload"]["token"]
    twin = Client()
    twin.cookies = alice.cookies
    barrier = threading.Barrier(2)
    responses, errors = [], []

    def confirm(client):
        try:
            barrier.wait()
            responses.append(client.post(reverse("upload_confirm"), {"token": token}))
        except Exception as exc:  # a crash in a view: the test client re-raises it here
            errors.append(exc)
        finally:
            connection.close()

    # when both confirm at once
    threads = [threading.Thread(target=confirm, args=(c,)) for c in (alice, twin)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then one set is saved, and both answers lead to it
    assert errors == []
    assert [(r.status_code, r.url) for r in responses] == [(302, reverse("skill_detail", args=[skill.pk]))] * 2
    assert DemonstrationSet.objects.filter(skill=skill).count() == 2
    assert DemonstrationSet.objects.filter(upload_token=token).count() == 1
    assert uploads(var_dir) == []


def test_a_second_file_of_the_same_content_is_still_refused_as_a_duplicate(login, skill, good_file):
    alice = login("alice")
    preview(alice, skill, "codes.jsonl", good_file)
    alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]})

    again = preview(alice, skill, "codes-again.jsonl", good_file)

    assert again.status_code == 422 and "same content" in again.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 2


def test_a_valid_unicode_file_is_accepted(login, skill, var_dir):
    rows = [{"prompt": f"Quelle est la règle n° {i} ? 東京 😀", "demonstration": f"Règle {i} — café"} for i in range(20)]

    response = preview(login("alice"), skill, "règles.jsonl", jsonl(rows))

    assert response.status_code == 200
