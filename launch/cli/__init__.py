"""The `gigafactory` command line: submitters, operators, factories and the dev stack."""
