"""`accrete upload`: a bad file is refused line by line (exit 1, nothing saved); a good one is saved at
once, or with --dry-run validated and saved later by `accrete confirm`."""

import pytest

from skills.models import DemonstrationSet

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def write(tmp_path):
    def to_file(name: str, content: bytes):
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return to_file


def test_a_bad_file_prints_each_problem_as_file_line_message_fix_and_exits_1(accrete, skill, bad_file, write):
    # given a file whose line 3 has no demonstration
    path = write("codes.jsonl", bad_file)
    # when
    ran = accrete("upload", "policy-codes", str(path))
    # then
    assert ran.code == 1
    assert ran.err.startswith("error: 1 problem(s); nothing was saved.")
    [problem] = [line for line in ran.err.splitlines() if line.startswith("codes.jsonl:")]
    assert problem.startswith("codes.jsonl:3: field 'demonstration': missing") and " — " in problem
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1  # the fixture's only


def test_a_good_file_is_saved_as_the_next_set(accrete, skill, good_file, write):
    ran = accrete("upload", "policy-codes", str(write("codes.jsonl", good_file)), "--seed", "7")

    assert ran.code == 0, ran.err
    saved = DemonstrationSet.objects.get(skill=skill, version=2)
    assert (saved.row_count, saved.split_seed) == (30, 7)
    assert ran.out.startswith("codes.jsonl: 30 row(s)")
    assert f"Saved as demonstration set {saved.pk} (policy-codes v2)." in ran.out


def test_a_dry_run_saves_nothing_until_confirmed(accrete, skill, good_file, write):
    # when alice validates only
    ran = accrete("upload", "policy-codes", str(write("codes.jsonl", good_file)), "--dry-run")
    # then nothing is saved, and the token to save it is printed
    assert ran.code == 0, ran.err
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1
    token = ran.out.rsplit("accrete confirm ", 1)[1].strip()
    # when she confirms it
    confirmed = accrete("confirm", token)
    # then
    assert confirmed.code == 0, confirmed.err
    assert DemonstrationSet.objects.filter(skill=skill, version=2).exists()


def test_the_same_file_twice_is_refused_as_a_duplicate(accrete, skill, good_file, write):
    path = write("codes.jsonl", good_file)
    assert accrete("upload", "policy-codes", str(path)).code == 0

    again = accrete("upload", "policy-codes", str(path))

    assert again.code == 1
    assert again.err.startswith("error: ")
    assert DemonstrationSet.objects.filter(skill=skill).count() == 2


def test_a_missing_file_is_a_usage_error(accrete, skill, tmp_path):
    ran = accrete("upload", "policy-codes", str(tmp_path / "nowhere.jsonl"))

    assert ran.code == 2
    assert "Cannot read" in ran.err and "nowhere.jsonl" in ran.err
