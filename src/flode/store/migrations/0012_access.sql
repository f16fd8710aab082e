-- The Swedish access rules (docs/access-control.md).

-- Who owns each resource (L7–L9, L11): the care unit and care provider it was first written
-- under, as HSA-ids; NULL for data written without one (the platform itself, an operator's
-- load). The same values are in the content's meta.tag; these columns let every query's access
-- condition read them without parsing the content.
ALTER TABLE resource ADD COLUMN owner_unit text, ADD COLUMN owner_provider text;

-- Emergency access (nödåtkomst) to blocked data, the second of its two steps (L9): this user may
-- read this patient's data blocked by this care unit or care provider until `expires`.
CREATE TABLE emergency_opening (
    pk           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_hsa_id  text        NOT NULL,
    patient_id   text        NOT NULL,
    organization text        NOT NULL,
    reason       text        NOT NULL,
    opened       timestamptz NOT NULL DEFAULT now(),
    expires      timestamptz NOT NULL
);
CREATE INDEX emergency_opening_user ON emergency_opening (user_hsa_id, expires);
