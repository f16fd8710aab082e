-- The care unit (vårdenhet) and care provider (vårdgivare) a module acts for (docs/modules.md):
-- its own (system) tokens carry their HSA-ids, so that what it writes is recorded as made under
-- them (DOMAIN.md L11). Both or neither; a module without them acts for no unit.
ALTER TABLE auth_client
    ADD COLUMN care_unit_hsa_id     text,
    ADD COLUMN care_provider_hsa_id text,
    ADD CONSTRAINT auth_client_owner_both_or_neither
        CHECK ((care_unit_hsa_id IS NULL) = (care_provider_hsa_id IS NULL));
