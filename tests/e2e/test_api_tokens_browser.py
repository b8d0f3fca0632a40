"""A token made in a real browser works against the live API: bob creates one on the tokens page, copies it
from the page (the only time it is shown) and calls /api/v1/me with it."""

import re

import httpx
import pytest

from tests.fixtures.browser import screenshot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_bob_creates_a_token_in_the_browser_and_calls_the_api_with_it(open_browser, live_server, people):
    from playwright.sync_api import expect

    page = open_browser()
    refused_by_csp = []
    page.on("console", lambda message: refused_by_csp.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in(page, "bob")

    page.locator(".sidenav").get_by_role("link", name="API tokens").click()
    expect(page.get_by_text("No tokens yet")).to_be_visible()
    page.fill("#id_token-name", "my laptop")
    page.select_option("#id_token-expires_in", "30")
    page.click("text=Create token")

    token = page.locator("[data-testid=new-token-value]").input_value()
    assert token.startswith("acc_")
    expect(page.get_by_text("it will not be shown again")).to_be_visible()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.locator("[data-testid=new-token]").get_by_role("button", name="Copy").click()
    expect(page.locator("[data-copy-status]")).to_have_text(re.compile("^Copied"))
    assert page.evaluate("() => navigator.clipboard.readText()") == token
    screenshot(page, "api-token-created")

    response = httpx.get(f"{live_server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["username"] == "bob"

    page.goto("/settings/tokens/")
    assert token not in page.content()
    assert page.locator("[data-testid=token-row]").count() == 1
    page.goto("/settings/webhooks/")  # the other new page, under the same policy
    assert refused_by_csp == []
