"""The model lab (issue 21): assistants, side-by-side comparison with votes, rerunnable checks."""
