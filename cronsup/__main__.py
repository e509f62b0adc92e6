"""`python -m cronsup`: the same command line as `cronsup`."""

from cronsup.cli import main

main()
