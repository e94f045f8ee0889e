"""The operator's own Kubernetes I/O, one adapter per job: client set-up, the writer, the schedule
store, watch caches, and the Lease store. Implements the runtime's and controllers' interfaces and
imports no controller."""
