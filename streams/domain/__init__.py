"""The pure domain: commands, events, aggregate state, and the rules between them.

Nothing here imports Faust, Kafka or Avro: `decide(state, command, now_ms)` returns the
events a command causes (or a `Rejection`), `evolve(state, event)` folds one event into the
state. Replay only ever calls `evolve`.
"""
