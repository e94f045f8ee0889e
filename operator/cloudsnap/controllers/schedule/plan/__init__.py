"""Schedule arithmetic and retention, as pure functions: no Kubernetes, no kopf, no clock.

`cron` parses and evaluates cron expressions in a time zone, `runs` decides which run is due and
names its children, `retention` decides which children to delete. The controller feeds them the
spec, the status, the children and the current time.
"""
