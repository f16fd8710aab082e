-- Result sets of searches with more than one page (docs/search.md, "Paging"): the matches'
-- keys in order, so later pages are read from the set and stay the same while data changes.
-- Unlogged: a set lost in a crash is recomputed from the query the page links also carry.
CREATE UNLOGGED TABLE search_result (
    id      uuid        PRIMARY KEY,
    created timestamptz NOT NULL DEFAULT now(),
    pks     bigint[]    NOT NULL
);
CREATE INDEX search_result_created ON search_result (created);
