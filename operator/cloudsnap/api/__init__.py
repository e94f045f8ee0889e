"""The custom resources of cloudsnap, and nothing else of the operator.

`constants` holds the names and fixed strings of the public API (group, kinds, labels,
annotations, metadata keys, EVS's limits); `models` (CloudSnapshot, CloudSnapshotClass),
`schedule` and `restore` the pydantic models, from which `crdgen` generates the CRDs in crds/;
`objects` and `progress` read and set the parts of a body every kind shares; `naming` and `text`
fit names and texts to EVS's and the CRDs' limits. Each name is imported from the module that
defines it.
"""
