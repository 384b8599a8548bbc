"""The incident domain: the aggregate and its state machine, commands, projections
and alert correlation."""
