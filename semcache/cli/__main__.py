"""`python -m semcache.cli`: the `semcache` command."""

from semcache.cli import main

main()
