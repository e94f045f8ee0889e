"""What knows no kind: the work queue, leader election, the write protocol and its Events, failure
classes, requeue timing, and the kopf watch (the one module that imports kopf)."""
