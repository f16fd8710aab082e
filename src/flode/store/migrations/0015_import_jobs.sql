-- FHIR Bulk Data import (`$import`, docs/bulk-data.md): one row per job, one per input file and
-- one per line (or input) that could not be imported. An input's cursor (the last line it has
-- handled) is saved with the errors of its lines in one transaction after every chunk, so a job
-- interrupted by a restart goes on after that line.
CREATE TABLE import_job (
    id                uuid        PRIMARY KEY,
    status            text        NOT NULL CHECK (status IN
                                  ('accepted', 'running', 'completed', 'failed', 'cancelled',
                                   'expired')),
    request           text        NOT NULL,
    input_source      text,
    -- Ping and pull: the export kick-off (`dynamic`) or manifest (`static`) to pull the inputs
    -- from, the kick-off parameters to pass on, and the status URL of the export it started.
    export_url        text,
    export_type       text        CHECK (export_type IN ('dynamic', 'static')),
    export_parameters jsonb       NOT NULL DEFAULT '[]',
    export_status_url text,
    -- Who asked (the request context), so that the background run is held to their access.
    requested_by      jsonb       NOT NULL,
    -- The kick-off's access token, sent only to this server's own URLs (its export files);
    -- cleared when the job ends.
    bearer            text,
    error             text,
    created           timestamptz NOT NULL DEFAULT now(),
    started           timestamptz,
    finished          timestamptz,
    expires           timestamptz
);
CREATE INDEX import_job_open ON import_job (created) WHERE status IN ('accepted', 'running');

CREATE TABLE import_input (
    job_id  uuid    NOT NULL REFERENCES import_job (id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    type    text    NOT NULL,
    url     text    NOT NULL,
    status  text    NOT NULL DEFAULT 'pending' CHECK (status IN
                    ('pending', 'deferred', 'loaded', 'failed')),
    -- The file as first read: a resumed job goes on only with the same content.
    bytes   bigint,
    sha256  text,
    line    bigint  NOT NULL DEFAULT 0,
    loaded  bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE import_error (
    job_id  uuid    NOT NULL,
    seq     integer NOT NULL,
    -- The line of the input (0: the input as a whole).
    line    bigint  NOT NULL,
    outcome jsonb   NOT NULL,
    PRIMARY KEY (job_id, seq, line),
    FOREIGN KEY (job_id, seq) REFERENCES import_input (job_id, seq) ON DELETE CASCADE
);
