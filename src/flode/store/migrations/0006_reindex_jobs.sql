-- Background re-indexing (`$reindex`, docs/search.md "Custom search parameters"): one row per
-- job, its progress written in the same transaction as each batch of index rows, so a job
-- interrupted by a restart resumes after the last resource it finished.
CREATE TABLE reindex_job (
    id       uuid        PRIMARY KEY,
    types    text[],
    status   text        NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    total    bigint      NOT NULL,
    done     bigint      NOT NULL DEFAULT 0,
    last_pk  bigint      NOT NULL DEFAULT 0,
    error    text,
    created  timestamptz NOT NULL DEFAULT now(),
    finished timestamptz
);
