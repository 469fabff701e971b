"""The ``govbridge`` command line: one module per command (``main`` builds the parser;
``load`` reads a config file for every command)."""
