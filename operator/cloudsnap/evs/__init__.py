"""Async client for Huawei Cloud EVS snapshots, disks and jobs; knows nothing of Kubernetes.

`client` holds `EVSClient`, `auth` its two ways to authenticate (AK/SK signing by `signing`, or an
IAM token), `models` the requests and answers, `errors` the one exception family every call
raises. Names are imported from the module that defines them.
"""
