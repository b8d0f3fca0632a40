"""Inline SVG line charts drawn on the server: no chart library, nothing fetched by the browser."""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_Y = 520, 180, 52, 12, 22


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def line_chart(points: list[tuple[float, float]], *, title: str, color: str = "#2563eb") -> SafeString:
    """A labelled polyline of (step, value) points scaled into a fixed box."""
    label = escape(title)
    if not points:
        return mark_safe(
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}: no data yet">'
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="chart-empty">'
            f'{label}: no points yet</text></svg>')
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - 2 * PAD_Y

    def sx(x: float) -> float:
        return PAD_LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return PAD_Y + (1 - (y - y0) / (y1 - y0)) * plot_h

    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True))
    last_x, last_y = sx(xs[-1]), sy(ys[-1])
    grid = "".join(
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{PAD_Y + f * plot_h:.1f}" y2="{PAD_Y + f * plot_h:.1f}" '
        f'class="chart-grid"/>' for f in (0, 0.5, 1))
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        f'<text x="{PAD_LEFT}" y="14" class="chart-title">{label}</text>'
        f'{grid}'
        f'<text x="{PAD_LEFT - 6}" y="{PAD_Y + 4}" text-anchor="end" class="chart-axis">{_fmt(y1)}</text>'
        f'<text x="{PAD_LEFT - 6}" y="{PAD_Y + plot_h + 4}" text-anchor="end" class="chart-axis">{_fmt(y0)}</text>'
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 4}" class="chart-axis">step {int(x0)}</text>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 4}" text-anchor="end" class="chart-axis">step {int(xs[-1])}</text>'
        f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="3.5" fill="{color}"/>'
        f'<text x="{min(last_x, WIDTH - PAD_RIGHT - 4):.1f}" y="{max(last_y - 8, 26):.1f}" text-anchor="end" '
        f'class="chart-value">{_fmt(ys[-1])}</text>'
        '</svg>')
