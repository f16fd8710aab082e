-- The results of log reviews (loggkontroll, DOMAIN.md L5: "review results are stored";
-- docs/audit.md): what a reviewer concluded about entries of the access log, written by
-- flode.audit.results and served as FHIR Basic resources.
--
-- Append-only: a new conclusion about the same entries is a new row, and no row is ever
-- changed or removed.
CREATE TABLE audit_review_result (
    seq               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                text        NOT NULL UNIQUE,
    recorded          timestamptz NOT NULL,
    -- Who concluded, from the reviewer's token: user, commission, care unit, care provider,
    -- and the client (module) used.
    reviewer_hsa_id   text        NOT NULL,
    commission_hsa_id text,
    care_unit         text,
    care_provider     text,
    client_id         text,
    outcome           text        NOT NULL
        CHECK (outcome IN ('no-remark', 'justified', 'follow-up', 'incident')),
    comment           text,
    -- The ids of the audit_event entries concluded about. Not foreign keys: a prune removes
    -- entries past the retention, and what was concluded about them is kept.
    entries           text[]      NOT NULL CHECK (cardinality(entries) > 0),
    -- The parameters of the $review-sample that drew the entries, as a query string.
    sample            text,
    -- The Basic resource as served (flode.audit.results).
    content           text        NOT NULL
);

CREATE INDEX audit_review_result_entries ON audit_review_result USING gin (entries);
CREATE INDEX audit_review_result_reviewer ON audit_review_result (reviewer_hsa_id, seq);

CREATE FUNCTION audit_review_result_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_review_result is append-only: % is not allowed', TG_OP;
END $$;

CREATE TRIGGER audit_review_result_guard BEFORE UPDATE OR DELETE ON audit_review_result
    FOR EACH ROW EXECUTE FUNCTION audit_review_result_guard();
CREATE TRIGGER audit_review_result_no_truncate BEFORE TRUNCATE ON audit_review_result
    FOR EACH STATEMENT EXECUTE FUNCTION audit_review_result_guard();
