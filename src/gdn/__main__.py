"""`python -m gdn`: the `gdn` command."""

from gdn.cli import console

console()
