"""Operators' tools outside the workers: `bank verify`, `bank replay views|state`, dead letters, `bank status`, an account as of a time, and the customers' keys."""
