"""`python -m difflab ...` (and `torchrun ... -m difflab train CONFIG`)."""

from .cli import main

main()
