"""`python -m streams.cli ...`, as the tests and the workers' supervisors run it."""
from .main import main

main()
