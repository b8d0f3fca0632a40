"""The browser upload reads each file once per request: the preview validates it in one pass and keeps
what the confirmation needs; the confirmation streams the rows in, checks the bytes' sha256 against the
preview's, and saves nothing when the file changed in between."""

import builtins
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from skills.models import Demonstration, DemonstrationSet, EvalCase, EvalSuite


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


# 300 rows (~30 KB): past the 8 KiB and 50 lines the format is told from, so a re-read of them would show
TRAIN = jsonl([{"prompt": f"Which form does request {i} need?", "demonstration": f"FORM-{i:04d}",
                "reference": f"FORM-{i:04d}"} for i in range(300)])
EVAL = jsonl([{"prompt": f"Which form does eval request {i} need?", "demonstration": f"E-{i}", "reference": f"E-{i}"}
              for i in range(8)])


class CountedFile:
    """A binary file that adds each byte read through it to a tally."""

    def __init__(self, handle, tally: dict):
        self._handle, self._tally = handle, tally

    def read(self, size: int = -1) -> bytes:
        return self._count(self._handle.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._count(self._handle.readline(size))

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def _count(self, data: bytes) -> bytes:
        self._tally["bytes"] += len(data)
        return data


@pytest.fixture
def reads(monkeypatch, var_dir):
    """Opens for reading, and bytes read, of each pending upload file: {"upload": {...}, "eval": {...}}."""
    real_open = builtins.open
    tally = defaultdict(lambda: {"opens": 0, "bytes": 0})

    def counting_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, str | os.PathLike) and "r" in mode and Path(file).parent == var_dir / "uploads":
            counts = tally[Path(file).suffix.lstrip(".")]
            counts["opens"] += 1
            return CountedFile(handle, counts)
        return handle

    monkeypatch.setattr(builtins, "open", counting_open)
    return tally


def preview(client, skill, *, with_eval: bool):
    data = {"skill": skill.pk, "file": SimpleUploadedFile("forms.jsonl", TRAIN)}
    if with_eval:
        data["eval_file"] = SimpleUploadedFile("forms-eval.jsonl", EVAL)
    return client.post(reverse("upload"), data)


def pending_file(client, var_dir, suffix: str = "upload") -> Path:
    return var_dir / "uploads" / f"{client.session['pending_upload']['token']}.{suffix}"


@pytest.mark.parametrize("with_eval", [False, True], ids=["split", "eval file"])
def test_the_preview_reads_each_file_once(login, skill, reads, with_eval):
    response = preview(login("alice"), skill, with_eval=with_eval)

    assert response.status_code == 200, response.content.decode()[:400]
    expected = {"upload": {"opens": 1, "bytes": len(TRAIN)}}
    if with_eval:
        expected["eval"] = {"opens": 1, "bytes": len(EVAL)}
    assert dict(reads) == expected


@pytest.mark.parametrize("with_eval", [False, True], ids=["split", "eval file"])
def test_the_confirmation_reads_each_file_once(login, skill, reads, with_eval):
    alice = login("alice")
    preview(alice, skill, with_eval=with_eval)
    reads.clear()

    response = alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]})

    assert response.status_code == 302 and response.url == reverse("skill_detail", args=[skill.pk])
    expected = {"upload": {"opens": 1, "bytes": len(TRAIN)}}
    if with_eval:
        expected["eval"] = {"opens": 1, "bytes": len(EVAL)}
    assert dict(reads) == expected
    dset = DemonstrationSet.objects.get(skill=skill, version=2)
    assert (dset.train_count, dset.eval_count) == ((300, 8) if with_eval else (240, 60))


def test_the_confirmation_saves_the_split_the_preview_showed(login, skill):
    alice = login("alice")
    shown = preview(alice, skill, with_eval=False).context["outcome"]
    held_out = alice.session["pending_upload"]["validated"]["held_out"]

    alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]})

    dset = DemonstrationSet.objects.get(skill=skill, version=2)
    cases = EvalCase.objects.filter(suite__demonstration_set=dset)
    assert sorted(cases.values_list("line", flat=True)) == [index + 1 for index in held_out]  # one row a line
    assert Demonstration.objects.filter(demonstration_set=dset).count() == shown.train_count == 240
    assert dset.split_seed == shown.validated.seed == int(shown.report.content_sha256[:7], 16)
    assert dset.content_sha256 == shown.report.content_sha256


def _changed_answer(content: bytes) -> bytes:
    return content.replace(b'"FORM-0007"', b'"FORM-7777"')


def _unreadable_row(content: bytes) -> bytes:
    return content.replace(b'{"prompt": "Which form does request 7 need?"', b'{"prompt": 7')


def _rows_added(content: bytes) -> bytes:
    return content + jsonl([{"prompt": "One more?", "demonstration": "yes"}])


@pytest.mark.parametrize("change", [_changed_answer, _unreadable_row, _rows_added])
def test_a_file_changed_since_it_was_validated_is_refused_and_nothing_is_saved(login, skill, var_dir, change):
    alice = login("alice")
    preview(alice, skill, with_eval=False)
    path = pending_file(alice, var_dir)
    path.write_bytes(change(path.read_bytes()))
    before = (DemonstrationSet.objects.count(), Demonstration.objects.count(), EvalSuite.objects.count(),
              EvalCase.objects.count(), AuditEvent.objects.count())

    response = alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]}, follow=True)

    assert response.redirect_chain == [(f"{reverse('upload')}?skill={skill.pk}", 302)]
    assert ("forms.jsonl: the file changed since it was validated; upload it again. Nothing was saved."
            in response.content.decode())
    assert (DemonstrationSet.objects.count(), Demonstration.objects.count(), EvalSuite.objects.count(),
            EvalCase.objects.count(), AuditEvent.objects.count()) == before
    assert list((var_dir / "uploads").iterdir()) == [] and "pending_upload" not in alice.session


def test_an_eval_file_changed_since_it_was_validated_is_refused(login, skill, var_dir):
    alice = login("alice")
    preview(alice, skill, with_eval=True)
    path = pending_file(alice, var_dir, "eval")
    path.write_bytes(path.read_bytes().replace(b'"E-3"', b'"E-33"'))

    response = alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]}, follow=True)

    assert "forms.jsonl: the eval file changed since it was validated" in response.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1
    assert not Demonstration.objects.exists()


def test_content_saved_meanwhile_is_refused_on_confirmation(login, skill):
    alice, bob = login("alice"), login("bob")
    preview(alice, skill, with_eval=False)
    preview(bob, skill, with_eval=False)
    bob.post(reverse("upload_confirm"), {"token": bob.session["pending_upload"]["token"]})

    response = alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]}, follow=True)

    assert "same content as policy-codes demonstrations v2" in response.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 2


def test_a_pending_entry_from_before_this_release_asks_for_the_file_again(login, skill):
    alice = login("alice")
    preview(alice, skill, with_eval=False)
    session = alice.session
    del session["pending_upload"]["validated"]
    session.save()

    response = alice.post(reverse("upload_confirm"), {"token": session["pending_upload"]["token"]}, follow=True)

    assert "no longer pending" in response.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1
