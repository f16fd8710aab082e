-- The facts of the Swedish access rules (flode.access.facts; DOMAIN.md L1, L7–L9) keyed by
-- patient, and the functions the rules' SQL calls (flode.access.pdl).
--
-- Until now the facts were rows of search_reference and search_date, found through the care
-- unit or provider they name: every clinician's query gathered all the patients of the unit
-- and all the consents given to the provider, work that grows with the unit and that
-- PostgreSQL had to plan again, a dozen joins, for every request. Keyed by patient, the rules
-- check each patient found with one index look-up per fact.
--
-- HSA-ids are the identifiers of system urn:oid:1.2.752.29.4.19 (flode.access.ownership).
-- Parameters start with p_ so that none is ever taken for a column of the same name.

CREATE TABLE access_fact (
    resource_pk   bigint      NOT NULL REFERENCES resource (pk),
    resource_type text        NOT NULL,
    -- _care-relation, _consent-permit or _consent-deny
    param         text        NOT NULL,
    patient_id    text        NOT NULL,
    -- The organization the fact names: 'Organization/{id}', or '{system}|{value}' for a
    -- reference by identifier (the HSA-id form is 'urn:oid:1.2.752.29.4.19|{HSA-id}').
    organization  text        NOT NULL,
    -- When the fact holds.
    low           timestamptz NOT NULL,
    high          timestamptz NOT NULL
);
-- A patient's facts of one kind that still hold (most care relationships ended long ago), with
-- what the rules compare, so that the look-up is one index-only probe.
CREATE INDEX access_fact_patient ON access_fact (patient_id, param, high) INCLUDE (organization, low);
CREATE INDEX access_fact_resource ON access_fact (resource_pk);

-- The facts written so far, moved over: the patient of a care relationship is the compartment
-- of its Encounter or EpisodeOfCare, that of a consent or block the Consent's `patient`; a fact
-- without a date row holds always.
INSERT INTO access_fact (resource_pk, resource_type, param, patient_id, organization, low, high)
SELECT f.resource_pk, f.resource_type, f.param, p.patient_id, n.organization,
    coalesce(d.low, '-infinity'), coalesce(d.high, 'infinity')
FROM search_reference f
LEFT JOIN search_date d ON d.resource_pk = f.resource_pk AND d.param = f.param
CROSS JOIN LATERAL (
    SELECT c.compartment_id FROM resource_compartment c
    WHERE f.param = '_care-relation' AND c.resource_pk = f.resource_pk
    AND c.compartment_type = 'Patient'
    UNION ALL
    SELECT s.target_id FROM search_reference s
    WHERE f.param <> '_care-relation' AND s.resource_pk = f.resource_pk AND s.param = 'patient'
    AND s.target_type = 'Patient'
) p (patient_id)
CROSS JOIN LATERAL (
    SELECT 'Organization/' || f.target_id
    WHERE f.target_id IS NOT NULL AND coalesce(f.target_type, 'Organization') = 'Organization'
    UNION ALL
    SELECT coalesce(f.identifier_system, '') || '|' || f.identifier_value
    WHERE f.identifier_value IS NOT NULL
) n (organization)
WHERE f.resource_type IN ('Encounter', 'EpisodeOfCare', 'Consent')
AND f.param IN ('_care-relation', '_consent-permit', '_consent-deny');

DELETE FROM search_reference WHERE resource_type IN ('Encounter', 'EpisodeOfCare', 'Consent')
    AND param IN ('_care-relation', '_consent-permit', '_consent-deny');
DELETE FROM search_date WHERE resource_type IN ('Encounter', 'EpisodeOfCare', 'Consent')
    AND param IN ('_care-relation', '_consent-permit', '_consent-deny');
ANALYZE access_fact;

-- The names under which facts may name the organization with HSA-id `p_hsa`: the HSA-id
-- itself, and each Organization carrying it. Called once per query (an InitPlan) and planned
-- once per connection.
CREATE FUNCTION flode_organization_names(p_hsa text) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN ARRAY(
        SELECT 'urn:oid:1.2.752.29.4.19|' || p_hsa
        UNION ALL
        SELECT 'Organization/' || o.id FROM search_token t JOIN resource o ON o.pk = t.resource_pk
        WHERE t.resource_type = 'Organization' AND t.param = 'identifier'
        AND t.system = 'urn:oid:1.2.752.29.4.19' AND t.code = p_hsa AND NOT o.deleted
    );
END
$$;

-- L7, L9: the HSA-ids of the care units and providers whose data the patient `p_patient` has
-- blocked, by the blocks in force.
CREATE FUNCTION flode_blocks(p_patient text) RETURNS SETOF text
LANGUAGE plpgsql STABLE ROWS 2 AS $$
BEGIN
    RETURN QUERY
    SELECT substr(f.organization, length('urn:oid:1.2.752.29.4.19|') + 1) FROM access_fact f
    WHERE f.patient_id = p_patient AND f.param = '_consent-deny'
    AND starts_with(f.organization, 'urn:oid:1.2.752.29.4.19|')
    AND f.low <= now() AND f.high > now()
    UNION ALL
    SELECT t.code FROM access_fact f
    JOIN resource o ON o.resource_type = 'Organization'
        AND o.id = substr(f.organization, length('Organization/') + 1) AND NOT o.deleted
    JOIN search_token t ON t.resource_pk = o.pk AND t.resource_type = 'Organization'
        AND t.param = 'identifier' AND t.system = 'urn:oid:1.2.752.29.4.19'
    WHERE f.patient_id = p_patient AND f.param = '_consent-deny'
    AND starts_with(f.organization, 'Organization/')
    AND f.low <= now() AND f.high > now();
END
$$;

-- Whether a block of the patient `p_patient` hides data owned by `p_owner_unit` /
-- `p_owner_provider` from the user `p_user` of the unit `p_unit` and provider `p_provider`:
-- a block of the owner, not of the reader's own unit or provider, that the user has not
-- opened by emergency access.
CREATE FUNCTION flode_blocked(
    p_patient text, p_owner_unit text, p_owner_provider text,
    p_unit text, p_provider text, p_user text
) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM flode_blocks(p_patient) b (hsa)
        WHERE b.hsa IN (p_owner_unit, p_owner_provider) AND b.hsa <> p_unit
        AND b.hsa <> p_provider
        AND NOT EXISTS (SELECT 1 FROM emergency_opening e WHERE e.user_hsa_id = p_user
            AND e.patient_id = p_patient AND e.organization = b.hsa AND e.expires > now())
    );
END
$$;

-- For the notice a search gives (flode.access.emergency): among the patients `p_patients`,
-- each unit or provider whose data is blocked for the user `p_user` of unit `p_unit` and
-- provider `p_provider` and holds some of it, and whether the user opened it by emergency
-- access. Most patients have no block, and then it is one index look-up each.
CREATE FUNCTION flode_blocked_holders(
    p_patients text[], p_unit text, p_provider text, p_user text
) RETURNS TABLE (patient text, hsa text, opened boolean)
LANGUAGE plpgsql STABLE ROWS 1 AS $$
#variable_conflict use_column
BEGIN
    IF NOT EXISTS (SELECT 1 FROM access_fact f WHERE f.patient_id = ANY (p_patients)
            AND f.param = '_consent-deny') THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT DISTINCT b.patient, b.hsa, EXISTS (SELECT 1 FROM emergency_opening e
        WHERE e.user_hsa_id = p_user AND e.expires > now()
        AND e.patient_id = b.patient AND e.organization = b.hsa)
    FROM unnest(p_patients) AS p (patient)
    CROSS JOIN LATERAL (SELECT p.patient, h AS hsa FROM flode_blocks(p.patient) h) b
    WHERE b.hsa <> p_unit AND b.hsa <> p_provider
    AND EXISTS (SELECT 1 FROM resource_compartment pc JOIN resource r ON r.pk = pc.resource_pk
        WHERE pc.compartment_type = 'Patient' AND pc.compartment_id = b.patient
        AND NOT r.deleted AND (r.owner_unit = b.hsa OR r.owner_provider = b.hsa))
    ORDER BY b.patient, b.hsa;
END
$$;
