"""`python -m difflab ...` (and `torchrun ... -m difflab train CONFIG`)."""

from .app.cli import main

main()
