"""Sub-commands of the `valle` command line.

Each module in this package is one sub-command. It defines:

- ``NAME``: the sub-command's name (``valle NAME ...``),
- ``HELP``: a one-line description,
- ``add_arguments(parser)``: declares its arguments on an ``argparse`` parser,
- ``run(args) -> int``: does the work and returns the exit status.

`valle.cli` discovers the modules, so adding a command never touches the others.
Modules must import heavy dependencies (torch, transformers) inside ``run`` so that
``valle --help`` stays fast.
"""
