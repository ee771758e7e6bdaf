"""Tests of the command line, one module per command module of pipeline/cli/ (a package, so
their names do not clash with the tests of the work they drive)."""
