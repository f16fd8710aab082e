-- Files `flode load` has loaded (docs/loading.md): one row per file content. A file whose
-- SHA-256 is here is skipped when a load is run again, whatever its path is now.
CREATE TABLE load_file (
    sha256    text        PRIMARY KEY,
    path      text        NOT NULL,
    bytes     bigint      NOT NULL,
    resources integer     NOT NULL,
    method    text        NOT NULL CHECK (method IN ('transaction', 'fast')),
    loaded_at timestamptz NOT NULL DEFAULT now()
);
