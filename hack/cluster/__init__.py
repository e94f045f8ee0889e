"""Local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for tests and
the sandbox."""

from hack.cluster.client import Cluster, CommandError, tool_env
from hack.cluster.controlplane import ControlPlane, ControlPlaneError, stop_all

__all__ = ["Cluster", "CommandError", "ControlPlane", "ControlPlaneError", "stop_all", "tool_env"]
