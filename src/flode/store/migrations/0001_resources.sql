-- Resource storage. See docs/storage.md for the layout and the reasons behind it.

-- The current state of every resource ever written: one row per (type, id).
-- `pk` is the compact key every index row and version refers to.
CREATE TABLE resource (
    pk            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_type text        NOT NULL,
    id            text        NOT NULL,
    version       integer     NOT NULL,
    last_updated  timestamptz NOT NULL,
    deleted       boolean     NOT NULL DEFAULT false,
    CONSTRAINT resource_type_id UNIQUE (resource_type, id)
);
CREATE INDEX resource_type_last_updated ON resource (resource_type, last_updated);

-- Every version, including deletions (tombstones: content IS NULL).
-- `content` is the exact JSON Flöde serves, meta.versionId and meta.lastUpdated included, kept
-- as text so decimals keep the precision they were written with.
CREATE TABLE resource_version (
    resource_pk   bigint      NOT NULL REFERENCES resource (pk),
    version       integer     NOT NULL,
    resource_type text        NOT NULL,
    last_updated  timestamptz NOT NULL,
    method        text        NOT NULL CHECK (method IN ('POST', 'PUT', 'PATCH', 'DELETE')),
    content       text,
    PRIMARY KEY (resource_pk, version),
    CHECK ((method = 'DELETE') = (content IS NULL))
);
CREATE INDEX resource_version_last_updated ON resource_version (last_updated);
CREATE INDEX resource_version_type_last_updated ON resource_version (resource_type, last_updated);

-- Token index rows of the current, non-deleted version of each resource (search parameter
-- `identifier` for now; the search engine fills every token parameter).
CREATE TABLE search_token (
    resource_pk   bigint NOT NULL REFERENCES resource (pk),
    resource_type text   NOT NULL,
    param         text   NOT NULL,
    system        text,
    code          text   NOT NULL
);
CREATE INDEX search_token_code ON search_token (resource_type, param, code, system);
CREATE INDEX search_token_resource ON search_token (resource_pk);
