"""Client secrets of apps and of the tenant's admin client: add (at most two), delete."""
