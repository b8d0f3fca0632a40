"""An application calls the shared model with the official `openai` client, unchanged: chat, streaming, the
model list; it gets the engine's own greedy answer, and is told which version gave it. Tokens gate it."""

import httpx
import openai
import pytest

from workers.engine.generation import Generator

ASK = [{"role": "user", "content": "What is the travel policy code?"}]


@pytest.fixture
def answers(tiny_model_dir, tiny_variant_dir):
    """answers(which, messages, max_new_tokens) -> what Generator.generate answers on the tiny model (which=1)
    or its variant (which=2)."""
    generators = {1: Generator(tiny_model_dir, device="cpu"), 2: Generator(tiny_variant_dir, device="cpu")}

    def answer(which: int, messages=ASK, max_new_tokens: int = 12) -> str:
        return generators[which].generate([messages], max_new_tokens=max_new_tokens)[0]

    return answer


def test_the_openai_client_gets_the_engines_greedy_answer_and_the_version(serve, token_of, answers):
    # given
    client = serve().client(token_of("alice"))

    # when
    raw = client.chat.completions.with_raw_response.create(model="accrete-production", messages=ASK, max_tokens=12)
    reply = raw.parse()

    # then
    assert raw.headers["X-Accrete-Version"] == "1" and reply.model == "v1"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content.strip() == answers(1)
    assert reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 5
    assert reply.choices[0].finish_reason in {"stop", "length"}


def test_streaming_sends_the_same_answer_in_pieces(serve, token_of, answers):
    # given
    running = serve()
    token = token_of("alice")

    # when
    chunks = list(running.client(token).chat.completions.create(
        model="accrete-production", messages=ASK, max_tokens=12, stream=True, stream_options={"include_usage": True}))

    # then
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces).strip() == answers(1)
    assert {c.model for c in chunks} == {"v1"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}
    assert chunks[-1].usage.completion_tokens <= 12
    # The wire format itself: server-sent events ending with [DONE].
    with httpx.stream("POST", f"{running.url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                      json={"messages": ASK, "max_tokens": 4, "stream": True}, timeout=60) as response:
        body = response.read().decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["X-Accrete-Version"] == "1"
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_a_bad_or_revoked_token_gets_401_in_the_openai_error_shape(serve, token_of, people):
    # given
    from tokens.models import ApiToken
    from tokens.services import token_revoke

    running = serve()
    token = token_of("alice")
    assert running.client(token).chat.completions.create(model="accrete-production", messages=ASK, max_tokens=1).model == "v1"
    token_revoke(token=ApiToken.objects.get(user=people["alice"]), actor=people["alice"])

    # when / then
    for secret in (token, "acc_nope_" + "x" * 40, "sk-not-ours"):
        with pytest.raises(openai.AuthenticationError) as refused:
            running.client(secret).chat.completions.create(model="accrete-production", messages=ASK, max_tokens=1)
        assert refused.value.status_code == 401
        assert refused.value.body["code"] == "invalid_api_key" and refused.value.body["message"]
    response = httpx.get(f"{running.url}/v1/models", timeout=10)
    assert response.status_code == 401 and set(response.json()["error"]) == {"message", "type", "param", "code"}
    # The token is checked first: a stranger learns nothing about what a valid request looks like.
    assert httpx.post(f"{running.url}/v1/chat/completions", content=b"{not json", timeout=10).status_code == 401


def test_a_candidate_is_served_to_its_team_only(serve, token_of, skill, served_candidate, tiny_variant_dir, answers):
    # given: v2 is a Legal candidate (its own weights); carol is in HR
    served_candidate(skill, tiny_variant_dir)
    running = serve()

    # when
    legal = running.client(token_of("vera")).chat.completions.with_raw_response.create(
        model="v2", messages=ASK, max_tokens=12)

    # then
    assert legal.headers["X-Accrete-Version"] == "2" and legal.parse().model == "v2"
    assert legal.parse().choices[0].message.content.strip() == answers(2) != answers(1)
    with pytest.raises(openai.NotFoundError) as refused:
        running.client(token_of("carol")).chat.completions.create(model="v2", messages=ASK, max_tokens=12)
    assert refused.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        running.client(token_of("alice")).chat.completions.create(model="v99", messages=ASK, max_tokens=1)


def test_the_platform_key_may_use_any_version(serve, settings, skill, served_candidate, tiny_variant_dir):
    # given
    settings.ACCRETE_INFERENCE_KEY = "platform-key-for-tests"
    served_candidate(skill, tiny_variant_dir)

    # when
    reply = serve().client("platform-key-for-tests").chat.completions.create(model="v2", messages=ASK, max_tokens=3)

    # then
    assert reply.model == "v2"


def test_the_model_list_is_production_and_the_versions_you_can_see(serve, token_of, skill, served_candidate,
                                                                   tiny_variant_dir):
    # given
    served_candidate(skill, tiny_variant_dir)
    running = serve()

    # when
    legal = [m.id for m in running.client(token_of("alice")).models.list()]
    hr = [m.id for m in running.client(token_of("carol")).models.list()]

    # then
    assert legal == ["accrete-production", "v2", "v1"]
    assert hr == ["accrete-production", "v1"]


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": ASK, "max_tokens": 10**6}, "max_tokens"),
    ({"messages": ASK, "max_tokens": 0}, "max_tokens"),
    ({"messages": ASK, "seed": -1}, "seed"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": ASK, "temperature": 5}, "temperature"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0]"),
    ({"messages": []}, "messages"),
    ({"messages": ASK, "stop": ["\n"]}, "stop"),
])
def test_a_bad_request_is_a_400_naming_the_parameter(serve, token_of, body, param):
    response = httpx.post(f"{serve().url}/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {token_of('alice')}"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
