"""Models as the API shows them (the shapes of api.schemas)."""

from dataclasses import asdict, is_dataclass

from teams.permissions import role_in


def skill(s) -> dict:
    return {"id": s.pk, "slug": s.slug, "name": s.name, "team": s.team.slug, "description": s.description,
            "scorer": s.scorer, "scorer_options": s.scorer_options, "teacher_style": s.teacher_style,
            "tolerance": s.tolerance, "min_gain": s.min_gain, "max_new_tokens": s.max_new_tokens,
            "status": s.status, "created_at": s.created_at}


def demonstration_set(d) -> dict:
    return {"id": d.pk, "skill": d.skill.slug, "version": d.version, "filename": d.filename, "format": d.format,
            "row_count": d.row_count, "train_count": d.train_count, "eval_count": d.eval_count,
            "split_seed": d.split_seed, "content_sha256": d.content_sha256, "created_at": d.created_at,
            "readiness": "done" if d.readiness else "none"}


def job(j) -> dict:
    total = j.total_steps or 0
    return {"id": j.pk, "skill": j.skill.slug, "team": j.skill.team.slug, "method": j.method, "status": j.status,
            "cancel_requested": j.cancel_requested, "demonstration_set": j.demonstration_set_id,
            "parent_version": j.parent_version.number if j.parent_version_id else None,
            "candidate_version": j.candidate.number if j.candidate_id else None,
            "step": j.step, "total_steps": total, "progress": (j.step / total) if total else None,
            "loss": j.loss, "kl": j.kl, "tokens_per_second": j.tokens_per_second, "eta_seconds": j.eta_seconds,
            "error": j.error, "requested_by": j.requested_by.get_username() if j.requested_by_id else None,
            "created_at": j.created_at, "started_at": j.started_at, "finished_at": j.finished_at,
            "config": j.config}


def version(v) -> dict:
    gate = getattr(v, "gate", None) if _has_gate(v) else None
    training_job = getattr(v, "training_job", None) if _has_job(v) else None
    return {"number": v.number, "status": v.status, "skill": v.skill.slug if v.skill_id else None,
            "team": v.skill.team.slug if v.skill_id else None, "parent": v.parent.number if v.parent_id else None,
            "base_model": v.base_model.name, "created_at": v.created_at, "promoted_at": v.promoted_at,
            "gate_verdict": gate.verdict if gate else None, "gate_error": v.gate_error,
            "job": training_job.pk if training_job else None}


def _has_gate(v) -> bool:
    try:
        v.gate  # noqa: B018 (a reverse one-to-one raises when there is none)
        return True
    except Exception:  # RelatedObjectDoesNotExist
        return False


def _has_job(v) -> bool:
    try:
        v.training_job  # noqa: B018
        return True
    except Exception:
        return False


def promotion_request(r) -> dict:
    return {"id": r.pk, "version": r.version.number, "skill": r.version.skill.slug, "team": r.version.skill.team.slug,
            "status": r.status, "requested_by": r.requested_by.get_username(), "comment": r.comment,
            "created_at": r.created_at, "decided_at": r.decided_at, "closed_reason": r.closed_reason}


def token(t) -> dict:
    return {"prefix": t.prefix, "name": t.name, "user": t.user.get_username(), "state": t.state(),
            "created_at": t.created_at, "expires_at": t.expires_at, "last_used_at": t.last_used_at}


def service_account(a, roles: dict | None = None) -> dict:
    """`roles`: each account's role_in by account id, when a list fetched them in one query."""
    return {"id": a.pk, "name": a.name, "username": a.user.get_username(), "team": a.team.slug,
            "role": roles[a.pk] if roles is not None else role_in(a.user, a.team), "active": a.is_active,
            "created_at": a.created_at}


def webhook(w) -> dict:
    return {"id": w.pk, "team": w.team.slug, "url": w.url, "events": list(w.events), "active": w.active,
            "description": w.description, "created_at": w.created_at}


def delivery(d) -> dict:
    return {"id": d.pk, "endpoint": d.endpoint_id, "event_id": d.event_id, "event_type": d.event_type,
            "status": d.status, "attempts": d.attempts, "response_status": d.response_status,
            "latency_ms": d.latency_ms, "last_error": d.last_error, "created_at": d.created_at,
            "delivered_at": d.delivered_at, "next_attempt_at": d.next_attempt_at, "payload": d.payload}


def gate(report: dict) -> dict:
    """`registry.selectors.gate_report` as JSON (its flipped cases already follow the privacy rule)."""
    remedy = report["remedy"]
    return {"candidate": report["candidate"].number, "baseline": report["baseline"].number,
            "verdict": report["verdict"], "reasons": report["reasons"], "rows": report["rows"],
            "warnings": [{"suite": name, "warning": text} for name, text in report["warnings"]],
            "remedy": asdict(remedy) if is_dataclass(remedy) else None, "flipped": report["flipped"],
            "hidden_flips": report["hidden_flips"], "created_at": report["gate"].created_at}
