-- SMART on FHIR authorization (docs/modules.md): the registered modules (OAuth clients) and the
-- short-lived state of the authorization server. Every change that decides whether a token is
-- still good (a token revoked, a module disabled or changed) bumps `auth_change.generation` in
-- the same transaction; each server polls that one number and reloads what it keeps in memory
-- when it moves, so a `flode module disable` in another process takes effect within seconds.

CREATE TABLE auth_client (
    id                 text        PRIMARY KEY,
    name               text        NOT NULL,
    vendor             text        NOT NULL DEFAULT '',
    contact            text        NOT NULL DEFAULT '',
    -- Its public keys, inline (a JWKS) or at a URL; neither: a public client (a user-facing app
    -- that authenticates with PKCE only).
    jwks               jsonb,
    jwks_url           text,
    scopes             text[]      NOT NULL,
    redirect_uris      text[]      NOT NULL DEFAULT '{}',
    -- What it declares it reads, writes (resource types) and subscribes to (topic URLs).
    reads              text[]      NOT NULL DEFAULT '{}',
    writes             text[]      NOT NULL DEFAULT '{}',
    topics             text[]      NOT NULL DEFAULT '{}',
    enabled            boolean     NOT NULL DEFAULT true,
    -- Tokens issued before this time are refused (set when the module is disabled).
    tokens_valid_after timestamptz,
    created            timestamptz NOT NULL DEFAULT now(),
    last_seen          timestamptz,
    requests           bigint      NOT NULL DEFAULT 0,
    tokens_issued      bigint      NOT NULL DEFAULT 0,
    CHECK (jwks IS NULL OR jwks_url IS NULL)
);

-- EHR launches: an opaque id an EHR module hands to the app it launches, resolved at
-- /auth/authorize to the patient and encounter in context. Used once.
CREATE TABLE auth_launch (
    id         text        PRIMARY KEY,
    created_by text        NOT NULL,
    client_id  text,
    patient    text,
    encounter  text,
    created    timestamptz NOT NULL DEFAULT now(),
    expires    timestamptz NOT NULL,
    used       timestamptz
);

-- Authorization codes, by the SHA-256 of the code: used once, within minutes.
CREATE TABLE auth_code (
    code_hash       text        PRIMARY KEY,
    grant_id        uuid        NOT NULL,
    client_id       text        NOT NULL,
    redirect_uri    text        NOT NULL,
    code_challenge  text        NOT NULL,
    subject         text        NOT NULL,
    scopes          text[]      NOT NULL,
    -- The context claims of the tokens it is exchanged for (patient, the clinician's HSA-ids).
    claims          jsonb       NOT NULL,
    nonce           text,
    expires         timestamptz NOT NULL,
    used            timestamptz,
    access_token_id text
);

-- Refresh tokens, by the SHA-256 of the token. Each use rotates it: the old one is marked
-- used, and presenting a used one again revokes the whole grant.
CREATE TABLE auth_refresh_token (
    token_hash      text        PRIMARY KEY,
    grant_id        uuid        NOT NULL,
    client_id       text        NOT NULL,
    subject         text        NOT NULL,
    scopes          text[]      NOT NULL,
    claims          jsonb       NOT NULL,
    access_token_id text,
    created         timestamptz NOT NULL DEFAULT now(),
    expires         timestamptz NOT NULL,
    used            timestamptz,
    revoked         timestamptz
);
CREATE INDEX auth_refresh_token_grant ON auth_refresh_token (grant_id);
CREATE INDEX auth_refresh_token_client ON auth_refresh_token (client_id);

-- The `jti` of every client assertion seen, until it expires: a replay is refused.
CREATE TABLE auth_seen_jti (
    client_id text        NOT NULL,
    jti       text        NOT NULL,
    expires   timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- Access tokens revoked before they expire (RFC 7009), kept until they would have expired.
CREATE TABLE auth_revoked_token (
    token_id  text        PRIMARY KEY,
    client_id text        NOT NULL,
    expires   timestamptz NOT NULL,
    revoked   timestamptz NOT NULL DEFAULT now()
);

-- Clinician logins in progress at an upstream OpenID Connect provider, by their `state`.
CREATE TABLE auth_login (
    state         text        PRIMARY KEY,
    request       text        NOT NULL,
    nonce         text        NOT NULL,
    code_verifier text        NOT NULL,
    expires       timestamptz NOT NULL
);

CREATE TABLE auth_change (
    id         integer PRIMARY KEY CHECK (id = 1),
    generation bigint  NOT NULL
);
INSERT INTO auth_change (id, generation) VALUES (1, 0);
