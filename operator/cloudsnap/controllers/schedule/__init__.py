"""The CloudSnapshotSchedule controller: the step over each schedule, the store interface it
reaches Kubernetes through, and the pure arithmetic of runs and retention (``plan``)."""
