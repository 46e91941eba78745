"""The usage aggregator: rolls request events into exact usage counters (faust worker)."""
