"""fedc's passes and the pass manager (filled in by the passes issue)."""
