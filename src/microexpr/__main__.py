"""``python -m microexpr`` runs the command line."""

from microexpr.cli import main

main()
