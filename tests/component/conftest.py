"""The `bank` fixture for the component tests; the harness itself is in harness.py."""
from harness import bank  # noqa: F401  (a pytest fixture)
