"""Fixtures that give tests tiny shape-faithful twins (owned by the twin module's tests)."""
