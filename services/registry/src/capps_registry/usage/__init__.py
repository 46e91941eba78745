"""Usage stats of apps, read from the hot store the aggregator writes."""
