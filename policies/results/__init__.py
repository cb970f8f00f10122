"""Learning results (issue 18): cell definitions, the cell runner, the generated docs/results.md."""
