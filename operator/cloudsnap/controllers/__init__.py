"""One package per kind the operator reconciles: the decisions, over the generic runtime."""
