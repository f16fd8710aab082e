"""`flode load`: FHIR Bundles and NDJSON files into the database, in parallel, resumably.

Two paths, one command (docs/loading.md): by default every file goes through the transaction
machinery as a client's Bundle would (flode.load.transactional); `--fast` streams versions and
index rows with `COPY` (flode.load.fast) for an initial migration. Both validate with the same
`Validator`, index with the same `Indexer` and write resources by id with update semantics, so
loading a file again never duplicates it; files loaded before are skipped (`load_file`).

    sources       which files; reading JSON, NDJSON, gzip
    plan          what a file asks to be written: ids, references, chunks
    transactional the default path
    fast          the COPY path
    files         one file: skip, write, record
    hooks         the access log and the event outbox
    worker        a worker process
    runner        the workers, the progress bar, the results
    cli           the command
"""
