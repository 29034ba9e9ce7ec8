"""`python -m webapp.cli`: the otweb command (otweb serve spawns its worker this way)."""
from webapp.cli import main

main()
