-- FHIR Bulk Data export (`$export`, docs/bulk-data.md): one row per job and one per file it
-- wrote. A job's cursor (the type it is at and the last id it wrote) is saved in the same
-- transaction as the sizes of its files, so a job interrupted by a restart truncates its files
-- to what was saved and resumes after that id.
CREATE TABLE export_job (
    id               uuid        PRIMARY KEY,
    status           text        NOT NULL CHECK (status IN
                                 ('accepted', 'running', 'completed', 'failed', 'cancelled',
                                  'expired')),
    level            text        NOT NULL CHECK (level IN ('system', 'patient', 'group')),
    group_id         text,
    -- The patients of a Group (resolved at kick-off) or of the `patient` parameter; NULL: all.
    patients         text[],
    types            text[]      NOT NULL,
    type_filters     text[]      NOT NULL DEFAULT '{}',
    since            timestamptz,
    transaction_time timestamptz NOT NULL,
    request          text        NOT NULL,
    -- Who asked (the request context), so that the background run can be held to their access.
    requested_by     jsonb       NOT NULL,
    issues           jsonb       NOT NULL DEFAULT '[]',
    total            bigint,
    done             bigint      NOT NULL DEFAULT 0,
    cursor_type      integer     NOT NULL DEFAULT 0,
    cursor_id        text,
    error            text,
    created          timestamptz NOT NULL DEFAULT now(),
    finished         timestamptz,
    expires          timestamptz
);
CREATE INDEX export_job_open ON export_job (created) WHERE status IN ('accepted', 'running');

CREATE TABLE export_file (
    job_id   uuid    NOT NULL REFERENCES export_job (id) ON DELETE CASCADE,
    name     text    NOT NULL,
    kind     text    NOT NULL CHECK (kind IN ('output', 'deleted', 'error')),
    type     text    NOT NULL,
    seq      integer NOT NULL,
    count    bigint  NOT NULL DEFAULT 0,
    bytes    bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, name)
);
