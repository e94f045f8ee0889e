"""cloudsnap: a Kubernetes operator for Huawei Cloud EVS disk snapshots."""
