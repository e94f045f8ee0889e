"""A faithful local EVS for tests and the sandbox; the operator never imports it.

Entry points: ``evs_simulator.testing.running_simulator`` (in-process), the ``evs-simulator``
console script, and ``evs_simulator.admin_client.AdminClient`` for the ``/_sim/`` admin API.

Choices made where the EVS documentation (docs/evs.md) leaves the behaviour open (tests in
tests/simulator pin each one):

- Authentication failures of every kind (signature, unknown AK, skew over 15 minutes, security
  token, X-Project-Id or URL project mismatch, bad X-Auth-Token) are the gateway's 401 APIG.0301;
  the five-failure AK lockout is not modelled, so one bad test cannot lock out the next.
- An in-use disk without ``force``, or a disk in any status but available/in-use, is refused with
  Cinder's 400 ``badRequest`` message, carrying code ``EVS.5400`` so clients get a string code.
- The 7-snapshots-per-disk limit answers 413 ``EVS.5413``; every snapshot not yet gone counts,
  ``deleting`` ones included (quota is released when the deletion completes).
- A snapshot whose disk is set to ``error`` while the snapshot is ``creating`` ends in ``error``.
- Name/description over 255 UTF-8 bytes, a name over 64 characters, a description over 85
  (the limits of Huawei's current API pages), a name starting ``autobk_snapshot_``, a reserved
  (``__system__``) or oversized metadata key are 400 ``EVS.5400``; a body that is not JSON is
  ``EVS.1013``, JSON of the wrong shape ``EVS.1052``; a malformed volume id ``EVS.1002``, a
  malformed snapshot id ``EVS.2045``.
- Update is allowed in every status except deleting/error_deleting (400 ``EVS.5400``). Delete of an
  ``error_deleting`` snapshot is 500 ``EVS.2019``; of any other status but available/error 400
  ``EVS.1047``. Rollback needs an available snapshot (else ``EVS.2043``) and its own disk, detached.
- An omitted name reads back as ``""``; ``updated_at`` is null until the first change.
- Snapshot and disk ids come from a generator seeded with ``--seed``, so runs replay.
- Admin-forced statuses stick: a transition in flight is dropped.
- With a list lag (``--list-lag``, ``PATCH /_sim/settings``), list leaves out, ``count`` and ``id``
  filters included, every snapshot younger than the lag as it is set now; show and the quota see
  them at once. Deletions are not lagged.
- Throttling (``--rate-limit``, ``PATCH /_sim/settings``) keeps a token bucket per caller and
  operation; the caller is the access key, or one ``X-Auth-Token`` caller. It runs after
  authentication (a forged request is a 401 and spends no token) and before faults; a throttled
  call is 429 ``APIG.0308`` in the gateway's shape, is not applied, and counts in both
  ``/_sim/calls`` and ``/_sim/throttled``. New limits start with full buckets.
- A ``late_apply`` create (of a snapshot or a disk) is checked on arrival (a refusal is
  answered), goes unanswered, and is applied later with every check run again; refused then, it
  is dropped with a log line only. A reset or the server's stop drops late creates still pending.
- Disks are created through ``POST /v2.1/{project}/cloudvolumes`` only (the version the official
  SDK calls, with ``X-Client-Token``), one per request (``count`` other than 1 is ``EVS.5400``).
  A token is remembered only for a request that was accepted; the same token and body within 8
  hours answer the first job again, another body is ``EVS.2219``, a token that is not a UUID
  ``EVS.2218``, a token older than 8 hours ``EVS.2220``. A disk made from a snapshot must be in
  the snapshot's zone (``EVS.2054``) and of its disk type (``EVS.2096``) and at least its size
  (``EVS.1010``, the code of an invalid size: none is documented for this case).
- Reserved (``__system__``) metadata keys are refused on disks as on snapshots (``EVS.5400``).
- The disk quota (``--volume-quota``, ``PATCH /_sim/settings``) counts every disk not yet gone and
  answers ``EVS.1034``; quota by gigabytes is not modelled.
- A disk exists, ``creating``, from the create on (real EVS may answer 404 for a while); its job
  is ``RUNNING`` until the disk leaves the job's status, then ``SUCCESS``, or ``FAIL`` when the
  disk ended in ``error`` (``EVS.2024``) or ``error_deleting`` (``EVS.2020``). An unknown job is
  400 ``Common.0011``. Attachments are not modelled: an ``in-use`` disk lists none.
- Deleting a disk with snapshots is Cinder's 400 ``badRequest`` with code ``EVS.5400`` (no EVS
  code is documented for it); a disk that is not available/error/error_* is ``EVS.1046``.
  Deleting a snapshot while a disk is being made from it is refused the same way, with Cinder's
  "Invalid snapshot" wording.
- During a rollback the disk reads ``rollbacking`` (the disk status table's word for it) and the
  snapshot ``rollbacking``; the disk takes the snapshot's content version when it ends.
"""
