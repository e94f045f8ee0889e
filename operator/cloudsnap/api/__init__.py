"""The custom resources of cloudsnap, and nothing else of the operator.

`constants` holds the group, the kinds and the fixed labels, annotations and prefixes; `models`
(CloudSnapshot, CloudSnapshotClass), `schedule` and `restore` the pydantic models, from which
`crdgen` generates the CRDs in crds/; `objects` and `progress` read and set the parts of a body
every kind shares; `naming` and `text` fit names and texts to EVS's and the CRDs' limits. Each
name is imported from the module that defines it.
"""
