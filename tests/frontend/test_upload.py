"""Uploading demonstrations in the browser: validate → preview → save, and everything that must refuse."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from skills.models import Demonstration, DemonstrationSet


def upload(client, skill, content: bytes, name: str = "codes.jsonl", **extra):
    return client.post(reverse("upload"), {"skill": skill.pk, "file": SimpleUploadedFile(name, content)}, **extra)


def uploads(var_dir) -> list[str]:
    folder = var_dir / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def multipart(skill_id: int, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart body written by hand: the test client would strip a hostile file name itself."""
    boundary = "AccreteBoundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"skill\"\r\n\r\n{skill_id}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_bad_file_shows_line_numbered_problems_and_saves_nothing(login, skill, bad_file, var_dir):
    response = upload(login("alice"), skill, bad_file)

    assert response.status_code == 422
    page = response.content.decode()
    assert "Problems — nothing was saved" in page
    assert '<td class="line-no">3</td>' in page
    assert "demonstration" in page
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1  # only the fixture's
    assert uploads(var_dir) == []
    assert "pending_upload" not in login("alice").session


def test_a_good_file_is_previewed_then_saved_on_confirmation(login, skill, good_file, var_dir):
    alice = login("alice")

    preview = upload(alice, skill, good_file)

    assert preview.status_code == 200
    assert "Save as a new demonstration set" in preview.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1
    token = alice.session["pending_upload"]["token"]
    assert uploads(var_dir) == [f"{token}.upload"]

    saved = alice.post(reverse("upload_confirm"), {"token": token})

    assert saved.status_code == 302 and saved.url == reverse("skill_detail", args=[skill.pk])
    dset = DemonstrationSet.objects.get(skill=skill, version=2)
    assert dset.train_count + dset.eval_count == 30
    assert Demonstration.objects.filter(demonstration_set=dset).count() == dset.train_count
    assert uploads(var_dir) == []
    assert "pending_upload" not in alice.session


def test_cancel_deletes_the_pending_file(login, skill, good_file, var_dir):
    alice = login("alice")
    upload(alice, skill, good_file)

    response = alice.post(reverse("upload_cancel"))

    assert response.status_code == 302
    assert uploads(var_dir) == []
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1


def test_a_hostile_file_name_is_never_used_as_a_path(login, skill, good_file, var_dir, tmp_path):
    alice = login("alice")
    body, content_type = multipart(skill.pk, "../../x.jsonl", good_file)

    preview = alice.generic("POST", reverse("upload"), body, content_type=content_type)
    assert preview.status_code == 200
    alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]})

    dset = DemonstrationSet.objects.get(skill=skill, version=2)
    assert dset.filename == "x.jsonl"
    assert not (var_dir / "x.jsonl").exists() and not (tmp_path / "x.jsonl").exists()
    assert not list(tmp_path.rglob("x.jsonl"))


def test_a_forged_token_is_not_a_path(login, skill, good_file, var_dir):
    alice = login("alice")
    upload(alice, skill, good_file)

    response = alice.post(reverse("upload_confirm"), {"token": "../../etc/passwd"})

    assert response.status_code == 302 and response.url == reverse("upload")
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1


def test_an_oversized_upload_is_refused_by_content_length_before_reading(login, skill, settings, var_dir):
    settings.ACCRETE_UPLOAD_MAX_BYTES = 1000
    alice = login("alice")
    body, content_type = multipart(skill.pk, "big.jsonl", b"{}\n" * 10)

    # The header claims far more than the body holds: reading the body would fail loudly in the test
    # client, so a 413 proves the request was refused on the header alone.
    response = alice.generic("POST", reverse("upload"), body, content_type=content_type,
                             CONTENT_LENGTH=str(50 * 1024 * 1024))

    assert response.status_code == 413
    assert "This upload is 52,428.8 kB; the limit is 1.0 kB" in response.content.decode()
    assert uploads(var_dir) == []


def test_an_upload_a_few_bytes_over_the_limit_says_by_how_much(login, skill, settings, var_dir):
    settings.ACCRETE_UPLOAD_MAX_BYTES = 50 * 1024 * 1024
    body, content_type = multipart(skill.pk, "big.jsonl", b"{}\n")

    response = login("alice").generic("POST", reverse("upload"), body, content_type=content_type,
                                      CONTENT_LENGTH=str(50 * 1024 * 1024 + 100))

    assert response.status_code == 413
    assert "This upload is 52,428,900 bytes; the limit is 52,428,800 bytes" in response.content.decode()


def test_a_real_body_over_the_limit_is_refused(login, skill, good_file, settings, var_dir):
    settings.ACCRETE_UPLOAD_MAX_BYTES = len(good_file) // 2

    response = upload(login("alice"), skill, good_file)

    assert response.status_code == 413
    assert uploads(var_dir) == [] and DemonstrationSet.objects.filter(skill=skill).count() == 1


def test_the_upload_still_needs_a_csrf_token(people, skill, good_file):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["alice"])

    response = upload(client, skill, good_file)

    assert response.status_code == 403
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1


def test_the_same_content_twice_is_recognised(login, skill, good_file):
    alice = login("alice")
    upload(alice, skill, good_file)
    alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]})

    again = upload(alice, skill, good_file)

    assert again.status_code == 422
    assert "same content" in again.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 2


def test_an_explicit_eval_file_sets_the_split(login, skill, good_file):
    from tests.fixtures.skills import jsonl

    eval_rows = [{"prompt": f"Eval request {i}?", "demonstration": f"E-{i}", "reference": f"E-{i}"} for i in range(8)]
    alice = login("alice")

    response = alice.post(reverse("upload"), {"skill": skill.pk, "file": SimpleUploadedFile("t.jsonl", good_file),
                                              "eval_file": SimpleUploadedFile("e.jsonl", jsonl(eval_rows))})

    assert response.status_code == 200
    assert response.context["outcome"].train_count == 30 and response.context["outcome"].eval_count == 8


@pytest.mark.parametrize("missing", ["skill", "file"])
def test_a_form_without_its_fields_is_refused(login, skill, good_file, missing):
    data = {"skill": skill.pk, "file": SimpleUploadedFile("a.jsonl", good_file)}
    del data[missing]

    response = login("alice").post(reverse("upload"), data)

    assert response.status_code == 400


def test_readiness_check_is_queued_for_a_worker(login, skill, fake_tasks):
    dset = skill.demonstration_sets.first()

    response = login("alice").post(reverse("readiness_check", args=[dset.pk]))

    assert response.status_code == 302
    assert fake_tasks.calls == [("readiness_check", (dset.pk,), {})]


def test_a_viewer_cannot_queue_a_readiness_check(login, skill, fake_tasks):
    response = login("vera").post(reverse("readiness_check", args=[skill.demonstration_sets.first().pk]))

    assert response.status_code == 403 and fake_tasks.calls == []


def test_an_eval_file_that_repeats_training_prompts_is_refused_naming_both_lines(login, skill, good_file, var_dir):
    import json

    from tests.fixtures.skills import jsonl

    train = [json.loads(line) for line in good_file.decode().splitlines() if line.strip()]
    eval_rows = [{"prompt": f"Eval request {i}?", "demonstration": f"E-{i}", "reference": f"E-{i}"} for i in range(8)]
    # the same question as training line 4, with other spacing and case
    eval_rows[2] = {"prompt": "  " + train[3]["prompt"].upper().replace(" ", "   "), "demonstration": "X", "reference": "X"}

    response = login("alice").post(reverse("upload"), {
        "skill": skill.pk, "file": SimpleUploadedFile("t.jsonl", good_file),
        "eval_file": SimpleUploadedFile("e.jsonl", jsonl(eval_rows))})

    assert response.status_code == 422
    problems = response.context["outcome"].eval_report.problems
    assert [(p.line, p.field) for p in problems] == [(3, "prompt")]
    assert problems[0].message == "line 3, field 'prompt': this prompt is also line 4 of the training file t.jsonl"
    assert "a case the model trained on does not measure the skill" in response.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1 and uploads(var_dir) == []


def test_the_preview_measures_rows_in_tokens_of_the_production_model(login, skill, good_file, var_dir, settings,
                                                                       base_version,
                                                                       tmp_path, tokenizer_dir):
    # given production's base model has its tokenizer in the artifact store
    settings.ACCRETE_ARTIFACTS = tmp_path / "artifacts"
    base = settings.ACCRETE_ARTIFACTS / "base" / "tiny"
    base.mkdir(parents=True)
    (base / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    # when
    preview = upload(login("alice"), skill, good_file)
    # then lengths are counted by that tokenizer, not bounded in characters
    assert preview.status_code == 200
    assert "mean prompt tokens" in preview.content.decode()


def test_a_pending_upload_is_deleted_after_its_ttl_and_its_confirmation_asks_again(login, skill, good_file, var_dir,
                                                                                  settings):
    import os
    from datetime import timedelta

    from django.utils import timezone

    from skills.uploads import pending_uploads_expire

    # given alice's validated upload, a day old, beside a fresh one of bob's and a file that is not an upload
    settings.ACCRETE_UPLOAD_TTL_S = 24 * 3600
    alice, bob = login("alice"), login("bob")
    upload(alice, skill, good_file)
    upload(bob, skill, good_file + b'{"prompt": "One more?", "demonstration": "yes"}\n')
    old = var_dir / "uploads" / f"{alice.session['pending_upload']['token']}.upload"
    day_ago = (timezone.now() - timedelta(hours=24, seconds=1)).timestamp()
    os.utime(old, (day_ago, day_ago))
    (var_dir / "uploads" / "notes.txt").write_text("not ours")
    # when the beat scheduler runs the expiry
    deleted = pending_uploads_expire()
    # then only the old upload is gone, and confirming it asks for the file again
    assert deleted == 1
    assert uploads(var_dir) == sorted([f"{bob.session['pending_upload']['token']}.upload", "notes.txt"])
    response = alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]}, follow=True)
    assert "no longer pending" in response.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1


def test_the_ttl_is_measured_from_now_given(var_dir, settings):
    from datetime import timedelta

    from django.utils import timezone

    from skills.uploads import pending_upload_store, pending_upload_token, pending_uploads_expire

    settings.ACCRETE_UPLOAD_TTL_S = 60
    pending_upload_store([b"x"], token=pending_upload_token(), suffix="upload")

    assert pending_uploads_expire(now=timezone.now() + timedelta(seconds=30)) == 0
    assert pending_uploads_expire(now=timezone.now() + timedelta(seconds=61)) == 1
    assert uploads(var_dir) == []
