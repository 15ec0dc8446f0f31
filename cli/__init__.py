"""The `charlm` command line: main.py (entry point, errors, logging), parser.py (arguments
and their help), commands.py (one function per command, each calling an operation of
tasks/). Nothing here is imported by the flows or the library."""
