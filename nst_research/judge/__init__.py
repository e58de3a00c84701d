"""Judges: fixed scores of a style-transfer result, independent of the objective the run optimised."""
