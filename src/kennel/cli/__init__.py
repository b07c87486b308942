"""The ``kennel`` command line: thin Typer shells over library calls."""
