"""`python -m bootstrap …` is the `prism` command (for environments without the script)."""
from bootstrap.cli import main

main()
