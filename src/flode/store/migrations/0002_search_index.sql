-- Search index rows, one table per search-parameter type. See docs/storage.md ("Index rows")
-- and src/flode/store/params/, where each type's module writes and queries its table.
-- Every row is keyed by resource_pk + resource_type + param and describes the current,
-- non-deleted version only.

-- token: `text` is the normalised CodeableConcept.text / Coding.display (`:text`);
-- type_system, type_code: an Identifier's type coding (`:of-type`). A CodeableConcept with
-- only a text has a row without code.
ALTER TABLE search_token
    ADD COLUMN text        text,
    ADD COLUMN type_system text,
    ADD COLUMN type_code   text,
    ALTER COLUMN code DROP NOT NULL;

-- string: `value` normalised (case-folded, accents stripped, at most 256 characters),
-- `exact` as written. text_pattern_ops: prefix search is a byte-wise range on `value`.
CREATE TABLE search_string (
    resource_pk   bigint NOT NULL REFERENCES resource (pk),
    resource_type text   NOT NULL,
    param         text   NOT NULL,
    value         text   NOT NULL,
    exact         text   NOT NULL
);
CREATE INDEX search_string_value ON search_string (resource_type, param, value text_pattern_ops);
CREATE INDEX search_string_resource ON search_string (resource_pk);

-- date: the half-open range [low, high) a value stands for; open Period ends are
-- 0001-01-01T00:00Z and 9999-12-31T23:59:59.999999Z.
CREATE TABLE search_date (
    resource_pk   bigint      NOT NULL REFERENCES resource (pk),
    resource_type text        NOT NULL,
    param         text        NOT NULL,
    low           timestamptz NOT NULL,
    high          timestamptz NOT NULL
);
CREATE INDEX search_date_low ON search_date (resource_type, param, low, high);
CREATE INDEX search_date_high ON search_date (resource_type, param, high);
CREATE INDEX search_date_resource ON search_date (resource_pk);

-- quantity and number: `value` exact (NULL for a Range), [low, high) its implicit precision
-- range; numbers have no system, code or unit.
CREATE TABLE search_quantity (
    resource_pk   bigint  NOT NULL REFERENCES resource (pk),
    resource_type text    NOT NULL,
    param         text    NOT NULL,
    system        text,
    code          text,
    unit          text,
    value         numeric,
    low           numeric NOT NULL,
    high          numeric NOT NULL
);
CREATE INDEX search_quantity_low ON search_quantity (resource_type, param, low, high);
CREATE INDEX search_quantity_resource ON search_quantity (resource_pk);

-- reference: target type and id (relative, or parsed from an absolute URL), the absolute
-- URL or canonical (without |version), and Reference.identifier for `:identifier`.
CREATE TABLE search_reference (
    resource_pk       bigint NOT NULL REFERENCES resource (pk),
    resource_type     text   NOT NULL,
    param             text   NOT NULL,
    target_type       text,
    target_id         text,
    url               text,
    identifier_system text,
    identifier_value  text
);
CREATE INDEX search_reference_source ON search_reference (resource_type, param, target_id);
CREATE INDEX search_reference_target ON search_reference (target_type, target_id, param);
CREATE INDEX search_reference_url ON search_reference (resource_type, param, url)
    WHERE url IS NOT NULL;
CREATE INDEX search_reference_identifier
    ON search_reference (resource_type, param, identifier_value)
    WHERE identifier_value IS NOT NULL;
CREATE INDEX search_reference_resource ON search_reference (resource_pk);

-- uri: the value as written; text_pattern_ops for `:below`.
CREATE TABLE search_uri (
    resource_pk   bigint NOT NULL REFERENCES resource (pk),
    resource_type text   NOT NULL,
    param         text   NOT NULL,
    value         text   NOT NULL
);
CREATE INDEX search_uri_value ON search_uri (resource_type, param, value text_pattern_ops);
CREATE INDEX search_uri_resource ON search_uri (resource_pk);

-- composite: a token first component (system, code) with the second component of the SAME
-- element as a token (value_system, value_code), a string (value_code, normalised), a
-- quantity or number (value_system, value_code = unit system and code, unit, value, low,
-- high) or a date (date_low, date_high).
CREATE TABLE search_composite (
    resource_pk   bigint NOT NULL REFERENCES resource (pk),
    resource_type text   NOT NULL,
    param         text   NOT NULL,
    system        text,
    code          text,
    value_system  text,
    value_code    text,
    unit          text,
    value         numeric,
    low           numeric,
    high          numeric,
    date_low      timestamptz,
    date_high     timestamptz
);
CREATE INDEX search_composite_code ON search_composite (resource_type, param, code, system);
CREATE INDEX search_composite_resource ON search_composite (resource_pk);

-- The compartments (Patient/123, Encounter/…) a resource belongs to, from the
-- CompartmentDefinitions: `Patient/{id}/{type}`, `$everything`, access checks.
CREATE TABLE resource_compartment (
    resource_pk      bigint NOT NULL REFERENCES resource (pk),
    resource_type    text   NOT NULL,
    compartment_type text   NOT NULL,
    compartment_id   text   NOT NULL,
    PRIMARY KEY (compartment_type, compartment_id, resource_type, resource_pk)
);
CREATE INDEX resource_compartment_resource ON resource_compartment (resource_pk);
