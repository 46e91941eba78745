"""The partner self-view: what an app may see of itself with its own token."""
