"""The browser and the live server share this process, and the ORM is called from the test between page
actions; Playwright's sync API keeps an event loop around, hence DJANGO_ALLOW_ASYNC_UNSAFE. The fixtures
are in tests/fixtures/browser.py."""

import os

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
