"""Project tooling: setup and test scripts, sample data generators, helpers."""
