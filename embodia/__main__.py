"""`python -m embodia` is the `embodia` command."""

from embodia.cli import main

main()
