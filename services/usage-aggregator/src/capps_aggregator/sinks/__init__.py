"""Adapters that apply a batch's counters to a store, idempotently."""
