"""pytest fixtures; the shared paths and helpers live in support.py (importable
from every test directory without clashing with tests/integration/conftest.py)."""
from support import event_validator, incident_validator, request_validator  # noqa: F401  (fixtures)
