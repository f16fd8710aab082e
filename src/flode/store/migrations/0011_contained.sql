-- Contained resources (`_contained`, docs/search.md "Contained resources"): each resource a
-- version contains is indexed like a resource of its own, under a key of its own.
--
-- One row per contained resource of the current, non-deleted version of its container,
-- replaced with the container's other index rows on every write. `pk` counts down from -1, so
-- it never equals a `resource.pk`: the contained resource's index rows are ordinary rows of the
-- search tables keyed by this `pk` with the contained resource's own type, which every query
-- that joins index rows to `resource` (searches, chains, `_has`, `_include`, `_sort`, access
-- rules) cannot reach, and which a `_contained` search reads by treating this table as its
-- `resource r`. Contained resources belong to no compartment and have no full-text row.
CREATE TABLE resource_contained (
    pk            bigint GENERATED ALWAYS AS IDENTITY
                  (START WITH -1 INCREMENT BY -1 MAXVALUE -1) PRIMARY KEY,
    container_pk  bigint NOT NULL,
    resource_type text   NOT NULL,
    id            text   NOT NULL,
    UNIQUE (container_pk, id)
);
CREATE INDEX resource_contained_type ON resource_contained (resource_type, id);
