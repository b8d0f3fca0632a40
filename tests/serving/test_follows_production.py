"""The service follows production: after a promotion the endpoint answers from the new version and says so,
while a request that started on the old one finishes there, whole. At most `keep` versions stay in memory,
and a version let go is freed only when its last request is done."""

import json
import types

import httpx

from tests.fixtures.registry import promote
from tests.fixtures.workers import wait_for
from workers.engine.generation import Generator

ASK = [{"role": "user", "content": "What is the travel policy code?"}]


def ask(client, max_tokens: int = 12):
    raw = client.chat.completions.with_raw_response.create(model="accrete-production", messages=ASK,
                                                           max_tokens=max_tokens)
    return raw.headers["X-Accrete-Version"], raw.parse()


def test_after_a_promotion_the_endpoint_answers_from_the_new_version(serve, token_of, people, skill,
                                                                      served_candidate, tiny_variant_dir):
    # given: production v1 is served; v2 (other weights) passed its gate
    v2 = served_candidate(skill, tiny_variant_dir)
    client = serve(poll_s=0.2).client(token_of("alice"))
    assert ask(client)[0] == "1"

    # when
    promote(v2, requester=people["alice"], approver=people["bob"])

    # then
    header, reply = wait_for(lambda: (answer := ask(client))[0] == "2" and answer, timeout=60,
                             what="the endpoint to answer from v2", interval=0.1)
    assert reply.model == "v2"
    expected = Generator(tiny_variant_dir, device="cpu").generate([ASK], max_new_tokens=12)[0]
    assert reply.choices[0].message.content.strip() == expected


def test_a_stream_in_flight_finishes_on_the_version_it_started_on(serve, settings, token_of, people, skill,
                                                                   served_candidate, tiny_variant_dir):
    # given: a long answer streaming from v1 (about five seconds of decoding on the tiny model)
    settings.ACCRETE_SERVE_MAX_NEW_TOKENS = 2000
    v2 = served_candidate(skill, tiny_variant_dir)
    running = serve(poll_s=0.2)
    token = token_of("alice")
    body = {"model": "accrete-production", "messages": ASK, "max_tokens": 2000, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{running.url}/v1/chat/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as stream:
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))

        # when: production moves while it streams
        promote(v2, requester=people["alice"], approver=people["bob"])
        switched = wait_for(lambda: (m := running.metrics())["production"] == 2 and m, timeout=30,
                            what="the service to switch to v2", interval=0.05)
        assert {"version": 1, "in_flight": 1} in switched["loaded"], "the long request was not in flight any more"
        newcomer = ask(running.client(token), max_tokens=2)
        rest = [line for line in lines if line.startswith("data: ")]

    # then: the newcomer got v2; the stream went on from v1 to its last token
    assert newcomer[0] == "2" and newcomer[1].model == "v2"
    assert rest[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in [first, *rest[:-1]]]
    assert {chunk["model"] for chunk in chunks} == {"v1"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 2000


def fake_loaded(number: int):
    from workers.serving.batching import LoadedVersion

    generator = types.SimpleNamespace(model=types.SimpleNamespace(config=types.SimpleNamespace()))
    return LoadedVersion(number, generator)


def test_the_least_recently_used_version_goes_and_is_freed_after_its_last_request(db):
    # given: room for production and one named version
    from workers.serving.versions import ServedVersions

    loads = []
    versions = ServedVersions(keep=2, load=lambda v: loads.append(v.number) or fake_loaded(v.number))
    versions.follow(types.SimpleNamespace(number=1))
    v2 = versions.acquire(types.SimpleNamespace(number=2))  # a request on v2, still running

    # when: someone names v3
    v3 = versions.acquire(types.SimpleNamespace(number=3))

    # then: v2 is let go but kept for its request; freed when it ends; v3 was loaded once
    assert [entry["version"] for entry in versions.describe()["loaded"]] == [1, 3]
    assert v2.retired and not v2.freed
    v2.release()
    assert v2.freed
    v3.release()
    assert versions.acquire(types.SimpleNamespace(number=3)) is v3 and loads == [1, 2, 3]


def test_a_new_production_is_loaded_before_the_switch_and_the_old_one_kept_by_name(db):
    from workers.serving.versions import ServedVersions

    versions = ServedVersions(keep=3, load=lambda v: fake_loaded(v.number))
    versions.follow(types.SimpleNamespace(number=1))
    old = versions.acquire_production()

    assert versions.follow(types.SimpleNamespace(number=2))
    assert not versions.follow(types.SimpleNamespace(number=2))
    assert versions.acquire_production().number == 2
    assert versions.acquire(types.SimpleNamespace(number=1)) is old and not old.retired
