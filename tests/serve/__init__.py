"""Tests of embodia.serve (a package, so module names here cannot clash with other test folders)."""
