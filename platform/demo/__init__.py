"""The demo (`make demo`): seeding, the scenario, the settings it uses and its report."""
