from workers.pipeline import run_candidate_gate
from registry.models import ModelVersion
def test_peek(gate_lineage, gate_models):
    for v in (gate_lineage.clean, gate_lineage.damaged):
        run_candidate_gate(v.pk)
        g = ModelVersion.objects.get(pk=v.pk).gate
        print(g.verdict, [(r["name"], r["before"], r["after"], r["total"]) for r in g.rows], g.reasons, len(g.flipped))
    print(gate_models.parent_tagging[:3], gate_models.tagging_references[:3])
