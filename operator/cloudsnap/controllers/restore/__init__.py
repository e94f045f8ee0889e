"""The CloudSnapshotRestore controller: the watch-fed controller, the reconciler, its pure
decisions, the cloud interface it drives (``external``) and its Kubernetes store (``store``)."""
