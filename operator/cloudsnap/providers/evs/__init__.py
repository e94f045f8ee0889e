"""Huawei Cloud EVS behind the external interface: the connector, accounts and their clients,
batched polling, and adaptive rate control."""
