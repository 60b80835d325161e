"""Reporting: human- and script-readable summaries of sites, runs and sweeps."""
