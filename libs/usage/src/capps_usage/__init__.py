"""The usage store contract shared by its writer (aggregator) and its readers (registry)."""
