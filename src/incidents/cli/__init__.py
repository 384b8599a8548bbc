"""The ``incidents`` command line: talks to the HTTP API, except local admin commands."""
