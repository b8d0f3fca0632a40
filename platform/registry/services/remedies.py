"""What to try after the gate blocks a candidate: read the blocked rows and the job's config, suggest one
remedy and say why. A pure function: the version page, `manage.py gate` and the retrain form share it.

- The retention probes dropped (against the parent or the base): the update moved the model everywhere,
  so anchor it to where it started — retention anchoring on, or twice as many anchors if it was on.
- An earlier skill dropped: rehearse that skill's training rows with their demonstrations.
- Only the skill being added fell short: not a retention problem. More anchoring would not help; more
  steps might, or the demonstrations do not show the skill (the readiness check says which).
"""

from dataclasses import dataclass, field

from registry.services.gates import lineage_reason

PROBES = "probes"


@dataclass(frozen=True)
class Remedy:
    action: str  # what to do, one sentence
    reason: str  # why, from the rows that blocked
    config: dict = field(default_factory=dict)  # the TrainConfig fields a retrain changes; {}: no retrain

    @property
    def retrains_with_retention(self) -> bool:
        return bool(self.config)


def _is_probes(row: dict) -> bool:
    return row.get("kind") == PROBES or row.get("name") == "retention probes"  # rows from before "kind"


def _blocked(row: dict) -> bool:
    return row.get("verdict") == "block" or (row.get("lineage") or {}).get("verdict") == "block"


def _drop_text(row: dict) -> str:
    lineage = row.get("lineage") or {}
    if lineage.get("verdict") == "block" and row["before"] - row["after"] <= row["tolerance"] + 1e-9:
        return lineage_reason(row["name"], lineage)
    return f"{row['name']} dropped {(row['before'] - row['after']) * 100:.0f} points (tolerance {row['tolerance']:.0%})"


def gate_remedy(*, rows: list[dict], config: dict) -> Remedy | None:
    """The remedy for a gate's rows (None when nothing blocked). `config` is the blocked job's TrainConfig
    snapshot: anchor_ratio None is the method's default; no anchor_ratio at all, a job from before anchoring."""
    from workers.engine.contract.config import DEFAULT_ANCHOR_RATIO, MAX_ANCHOR_RATIO  # pure Python, no torch

    blocked = [row for row in rows if _blocked(row)]
    if not blocked:
        return None
    probes = [row for row in blocked if _is_probes(row)]
    skills = [row for row in blocked if not _is_probes(row) and not row.get("target")]
    target = [row for row in blocked if row.get("target")]
    if not probes and not skills:
        row = target[0]
        return Remedy(
            action="Train longer (more steps or epochs), or run the readiness check on the demonstrations; "
                   "no retention remedy applies.",
            reason=f"Only {row['name']}, the skill being added, fell short ({row['before']:.0%} → "
                   f"{row['after']:.0%}): nothing was forgotten, the skill was not learned enough. SDFT can "
                   "only teach what the teacher shows with the demonstration in context.")

    method = config.get("method", "sdft")
    ratio = config.get("anchor_ratio")
    ratio = DEFAULT_ANCHOR_RATIO.get(method, 0.0) if ratio is None else float(ratio)
    if method != "sdft" or "anchor_ratio" not in config:
        # The retrain is SDFT, and an SFT job's anchors were replayed answers, not SDFT anchors; a config
        # without the field predates retention anchoring, so that job trained without anchors.
        ratio = 0.0
    was_on = ratio > 0
    anchoring = DEFAULT_ANCHOR_RATIO["sdft"] if not was_on else ratio
    if probes and was_on:
        anchoring = min(MAX_ANCHOR_RATIO, max(2 * ratio, DEFAULT_ANCHOR_RATIO["sdft"]))
    new = {"anchor_ratio": anchoring}
    actions, reasons = [], []
    if not was_on:
        actions.append(f"retrain by SDFT with retention anchoring on (anchor_ratio {ratio:g} → {anchoring:g})")
    elif anchoring != ratio:
        actions.append(f"retrain with more retention anchoring (anchor_ratio {ratio:g} → {anchoring:g})")
    else:
        actions.append(f"retrain with retention anchoring (anchor_ratio {anchoring:g})")
    if probes:
        if not was_on:
            job = "this job was SFT" if method != "sdft" else "this job did not anchor"
        elif anchoring != ratio:
            job = f"this job anchored at {ratio:g}: twice as many anchors per step hold harder"
        else:
            job = f"this job already anchored at the maximum, {ratio:g}: try anchor_teacher=base or fewer steps"
        reasons.append(f"{_drop_text(probes[0])}: the update moved the model on general prompts, and anchor rows "
                       f"pull it back toward where it started ({job})")
    if skills:
        slugs = [row["name"] for row in skills]
        new.update(rehearsal="demonstration", rehearsal_skills=slugs)
        actions.append(f"rehearse {', '.join(slugs)} (rehearsal=demonstration)")
        reasons.append("; ".join(_drop_text(row) for row in skills)
                       + f": rehearsing {'its' if len(slugs) == 1 else 'their'} training rows with their "
                         "demonstrations keeps what was learned")
    if target:
        reasons.append(f"{target[0]['name']}, the skill being added, also fell short: check its gain on the retrain")
    action = "; ".join(actions)
    return Remedy(action=action[0].upper() + action[1:] + ".", reason="; ".join(reasons) + ".", config=new)


def remedy_of_gate(gate) -> Remedy | None:
    """The remedy for a recorded GateResult: None unless it blocked a candidate a training job made."""
    job = gate.candidate.job
    if gate.verdict != "block" or job is None:
        return None
    return gate_remedy(rows=gate.rows, config={"method": job.method, **job.config})
