"""Template filters for the UI: status badges, percentages, score colours, charts."""

from django import template

from frontend import charts
from registry import reports

register = template.Library()

BADGE = {
    "production": "ok", "succeeded": "ok", "approved": "ok", "pass": "ok", "active": "ok",
    "awaiting_approval": "warn", "open": "warn", "queued": "info", "validating": "info", "running": "info",
    "candidate": "info", "evaluating": "info",
    "blocked": "bad", "block": "bad", "failed": "bad", "rejected": "bad",
    "stale": "muted", "retired": "muted", "cancelled": "muted", "archived": "muted", "withdrawn": "muted",
}


@register.filter
def badge_class(status) -> str:
    return "badge badge-" + BADGE.get(str(status), "muted")


@register.filter
def status_text(value) -> str:
    """awaiting_approval -> awaiting approval (labels that are already words pass through)."""
    return str(value).replace("_", " ")


# One formatter of scores for the pages and the plain-text tables (manage.py gate, the demo).
register.filter("pct", reports.pct)
register.filter("signed_pct", reports.signed_pct)


@register.filter
def delta_class(value) -> str:
    if value is None or abs(float(value)) < 1e-9:
        return "delta-zero"
    return "delta-up" if float(value) > 0 else "delta-down"


@register.filter
def heat(score) -> str:
    """Cell background from red (0) through amber to green (1)."""
    if score is None:
        return "background: var(--surface-2)"
    hue = round(float(score) * 120)
    return f"background: hsl({hue} 70% 88%)"


@register.filter
def duration(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def last_message(prompt) -> str:
    """The last user turn of a chat prompt (list of messages), for tables."""
    if isinstance(prompt, list) and prompt:
        return str(prompt[-1].get("content", ""))
    return str(prompt)


@register.simple_tag
def line_chart(points, title, color="#2563eb"):
    return charts.line_chart(points, title=title, color=color)
