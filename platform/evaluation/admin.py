"""EvalRun and CaseResult are registered by registry/admin.py: who may see a version's scores and outputs
follows who may see the version (registry.selectors.versions_visible_to), which the registry decides and
this app, below it, cannot ask."""
