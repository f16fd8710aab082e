-- The access log (DOMAIN.md L4–L6, docs/audit.md): one row per access to one patient's data,
-- written by flode.audit.append in the transaction of the access itself.
--
-- Append-only: rows are never changed, except that the sealer fills in the three seal columns
-- once (NULL → values), and never removed, except by `flode audit prune`, which sets
-- `flode.audit_prune` for its own transaction and deletes only entries older than the
-- retention. The seal is a hash chain: `hash` = sha256(prev_hash ‖ the row's canonical bytes),
-- `chain_pos` counts 1, 2, 3, … in sealing order, so `flode audit verify` finds a changed row
-- (its hash no longer matches) and a removed one (a gap in chain_pos, a prev_hash that points
-- nowhere).
CREATE TABLE audit_event (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            text        NOT NULL UNIQUE,
    recorded      timestamptz NOT NULL,
    -- NULL when the access concerned no patient (a review of the whole log, a denied search).
    patient_id    text,
    agent_hsa_id  text,
    client_id     text,
    care_unit     text,
    care_provider text,
    purpose       text,
    interaction   text        NOT NULL,
    action        text        NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
    outcome       text        NOT NULL CHECK (outcome IN ('0', '4', '8', '12')),
    flags         text[]      NOT NULL DEFAULT '{}',
    -- The AuditEvent as served, JSON text (flode.audit.event).
    content       text        NOT NULL,
    chain_pos     bigint      UNIQUE,
    hash          bytea,
    prev_hash     bytea,
    CHECK ((chain_pos IS NULL) = (hash IS NULL) AND (hash IS NULL) = (prev_hash IS NULL))
);

-- Review (loggkontroll, L5): by patient, by user, by care unit, each over a date range.
CREATE INDEX audit_event_patient ON audit_event (patient_id, recorded);
CREATE INDEX audit_event_agent ON audit_event (agent_hsa_id, recorded);
CREATE INDEX audit_event_care_unit ON audit_event (care_unit, recorded);
CREATE INDEX audit_event_recorded ON audit_event (recorded);
-- Flagged entries (emergency access, protected identity, …) are few and reviewed often.
CREATE INDEX audit_event_flags ON audit_event USING gin (flags) WHERE flags <> '{}';
-- What the sealer has left to do.
CREATE INDEX audit_event_unsealed ON audit_event (seq) WHERE chain_pos IS NULL;

-- Where the chain starts after a prune: the position and hash of the last entry removed, so
-- that verify can tell a prune from entries removed behind Flöde's back.
CREATE TABLE audit_anchor (
    chain_pos bigint      PRIMARY KEY,
    hash      bytea       NOT NULL,
    before    timestamptz NOT NULL,
    removed   bigint      NOT NULL,
    pruned_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.chain_pos IS NOT NULL OR NEW.hash IS NOT NULL OR NEW.prev_hash IS NOT NULL THEN
            RAISE EXCEPTION 'audit_event: entries are sealed by Flöde, not written sealed';
        END IF;
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.chain_pos IS NULL AND OLD.hash IS NULL AND OLD.prev_hash IS NULL
           AND NEW.chain_pos IS NOT NULL AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL
           AND (to_jsonb(NEW) - 'chain_pos' - 'hash' - 'prev_hash')
               = (to_jsonb(OLD) - 'chain_pos' - 'hash' - 'prev_hash') THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit_event is append-only: entry % cannot be changed', OLD.id;
    ELSIF TG_OP = 'DELETE' THEN
        IF current_setting('flode.audit_prune', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_event is append-only: entry % cannot be removed '
            '(only `flode audit prune` removes entries past the retention)', OLD.id;
    END IF;
    RAISE EXCEPTION 'audit_event is append-only: % is not allowed', TG_OP;
END $$;

CREATE TRIGGER audit_event_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_guard();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_guard();

-- The anchors are as permanent as the log: written once by a prune, never changed.
CREATE FUNCTION audit_anchor_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_anchor is append-only: % is not allowed', TG_OP;
END $$;

CREATE TRIGGER audit_anchor_guard BEFORE UPDATE OR DELETE ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION audit_anchor_guard();
CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION audit_anchor_guard();

-- Appending: one call per access (flode.audit.record.append), in the caller's transaction.
-- Arrays hold one element per entry; the AuditEvent JSON arrives in two parts split inside
-- `meta`, where the tags of the entry's flags are spliced in. Besides the flags the caller
-- knows, two are found here, from the search index:
--   protected-identity: the Patient has a security label of protected identity (L13);
--   same-surname: the user's Practitioner (by HSA-id) shares a family name with the Patient
--   (both normalised alike in search_string, so Öberg = Oberg).
-- A function, so that its plan is made once per connection (force_generic_plan): planning
-- this statement anew for every access costs several times what running it does.
CREATE FUNCTION audit_append(
    entry_ids text[], entry_patients text[], entry_interactions text[], entry_actions text[],
    entry_outcomes text[], entry_flags text[], entry_heads text[], entry_tails text[],
    user_id text, at_time timestamptz, client text, unit text, provider text,
    purpose_of_use text, protected_codes text[]
) RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    WITH e AS (
        SELECT * FROM unnest(entry_ids, entry_patients, entry_interactions, entry_actions,
                             entry_outcomes, entry_flags, entry_heads, entry_tails)
            WITH ORDINALITY AS e (id, patient_id, interaction, action, outcome, flags, head,
                                  tail, n)
    ),
    user_family AS (
        SELECT s.value FROM search_token t
        JOIN search_string s ON s.resource_pk = t.resource_pk
            AND s.resource_type = 'Practitioner' AND s.param = 'family'
        WHERE user_id IS NOT NULL AND t.resource_type = 'Practitioner'
            AND t.param = 'identifier' AND t.code = user_id
            AND t.system = 'urn:oid:1.2.752.29.4.19'
    ),
    flagged AS MATERIALIZED (
        SELECT e.*, ARRAY(
            SELECT DISTINCT f FROM unnest(
                string_to_array(e.flags, ',')
                || CASE WHEN EXISTS (
                    SELECT 1 FROM search_token t
                    WHERE t.resource_pk = p.pk AND t.resource_type = 'Patient'
                        AND t.param = '_security'
                        AND t.system = 'http://electronichealth.se/CodeSystem/SecurityLabel'
                        AND t.code = ANY (protected_codes)
                ) THEN ARRAY['protected-identity'] ELSE ARRAY[]::text[] END
                || CASE WHEN EXISTS (
                    SELECT 1 FROM search_string s
                    WHERE s.resource_pk = p.pk AND s.resource_type = 'Patient'
                        AND s.param = 'family' AND s.value IN (SELECT value FROM user_family)
                ) THEN ARRAY['same-surname'] ELSE ARRAY[]::text[] END
            ) AS f ORDER BY f
        ) AS all_flags
        FROM e LEFT JOIN resource p ON p.resource_type = 'Patient' AND p.id = e.patient_id
    )
    INSERT INTO audit_event (id, recorded, patient_id, agent_hsa_id, client_id, care_unit,
                             care_provider, purpose, interaction, action, outcome, flags,
                             content)
    SELECT f.id, at_time, f.patient_id, user_id, client, unit, provider, purpose_of_use,
        f.interaction, f.action, f.outcome, f.all_flags,
        f.head || CASE WHEN cardinality(f.all_flags) = 0 THEN '' ELSE
            ',"tag":[' || (
                SELECT string_agg(
                    '{"system":"http://flode.example.org/CodeSystem/audit-flag","code":'
                    || to_json(x)::text || '}', ',' ORDER BY x)
                FROM unnest(f.all_flags) AS x
            ) || ']' END || f.tail
    FROM flagged f ORDER BY f.n;
END $$;
