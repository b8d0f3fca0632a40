"""The built-in retention probes: general abilities every model version must keep.

The platform scores each base model on these once and keeps only the probes the base answers
correctly; from then on a probe that a candidate gets wrong is forgetting, not a probe that was
always too hard for a 135M model. Answers fit in 24 new tokens, and the scorers are the forgiving
ones (contains, numeric) so that a chattier but still correct model is not punished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from workers.engine.contract.jsonl import object_lines
from workers.engine.contract.scoring import validate_options

PROBES_PATH = Path(__file__).with_name("probes.jsonl")
PROBE_CATEGORIES = ("arithmetic", "factual", "instruction", "completion")
# generation budget the probes are written for; evaluation may pass it as max_new_tokens
PROBE_MAX_NEW_TOKENS = 24
_FIELDS = ("id", "category", "prompt", "reference", "scorer", "options")


@dataclass(frozen=True)
class Probe:
    id: str
    category: str
    prompt: str
    reference: str
    scorer: str
    options: dict = field(default_factory=dict)

    @property
    def messages(self) -> list[dict]:
        """The prompt as the engine's chat messages (see docs/engine-interface.md)."""
        return [{"role": "user", "content": self.prompt}]


def load_probes(path: Path = PROBES_PATH) -> list[Probe]:
    """Read and check the probe file; a broken line raises ValueError naming the file and line."""
    probes: list[Probe] = []
    seen: dict[str, int] = {}
    for line_number, where, row in object_lines(Path(path).read_text(encoding="utf-8"), path=path, fields=_FIELDS):
        for name in _FIELDS[:5]:
            if not isinstance(row[name], str) or not row[name].strip():
                raise ValueError(f"{where}: {name!r} must be a non-empty string")
        if row["category"] not in PROBE_CATEGORIES:
            raise ValueError(f"{where}: category {row['category']!r} is not one of {PROBE_CATEGORIES}")
        if row["id"] in seen:
            raise ValueError(f"{where}: id {row['id']!r} repeats line {seen[row['id']]}")
        try:
            validate_options(row["scorer"], row["options"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        seen[row["id"]] = line_number
        probes.append(Probe(**row))
    if not probes:
        raise ValueError(f"{path}: no probes")
    return probes
