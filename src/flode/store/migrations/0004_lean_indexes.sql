-- Cheaper writes: the index tables no longer check a foreign key on every row.
--
-- Index rows are derived data. The indexer writes them in the same transaction as the resource
-- row whose `pk` it has just been given, and nothing ever removes a `resource` row (a deletion
-- is a new version), so the key cannot dangle. The check was pure cost: one trigger, one
-- look-up and one row lock (FOR KEY SHARE) on `resource` per index row, for a Patient about
-- thirty of them. Dropping it took about an eighth off PostgreSQL's CPU time per create.
-- `search_text` (0003) was created without one for the same reason.
ALTER TABLE search_token DROP CONSTRAINT search_token_resource_pk_fkey;
ALTER TABLE search_string DROP CONSTRAINT search_string_resource_pk_fkey;
ALTER TABLE search_date DROP CONSTRAINT search_date_resource_pk_fkey;
ALTER TABLE search_quantity DROP CONSTRAINT search_quantity_resource_pk_fkey;
ALTER TABLE search_reference DROP CONSTRAINT search_reference_resource_pk_fkey;
ALTER TABLE search_uri DROP CONSTRAINT search_uri_resource_pk_fkey;
ALTER TABLE search_composite DROP CONSTRAINT search_composite_resource_pk_fkey;
ALTER TABLE resource_compartment DROP CONSTRAINT resource_compartment_resource_pk_fkey;
