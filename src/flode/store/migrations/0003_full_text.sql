-- Full-text search: `_text` (the narrative) and `_content` (every string, markdown, code and
-- narrative of the resource). See docs/storage.md and src/flode/store/params/text.py.
-- One row per resource with words, describing its current, non-deleted version: replaced with
-- the resource's other index rows on every write and removed by a delete. No foreign key: a
-- `resource` row is never removed, and the check would cost a look-up and a row lock per write.
-- The words are normalised in Python (case-folded, accents stripped, as for string search:
-- no `unaccent` is available) and stored as lexemes without positions (`array_to_tsvector`),
-- so no text search configuration or extension is involved.
CREATE TABLE search_text (
    resource_pk   bigint   PRIMARY KEY,
    resource_type text     NOT NULL,
    narrative     tsvector,
    content       tsvector
);
CREATE INDEX search_text_narrative ON search_text USING gin (narrative);
CREATE INDEX search_text_content ON search_text USING gin (content);
