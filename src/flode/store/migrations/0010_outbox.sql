-- The change feed and topic-based subscriptions (docs/storage.md "Outbox", docs/events.md).

-- One row per committed change, written in the transaction of the change itself (a create,
-- update, delete, a transaction Bundle's entries, a load). `id` is the order of insertion, not
-- of commit; `xid` is the writing transaction, so that the sequencer only takes rows of
-- transactions that can no longer commit rows before them (see docs/storage.md). `event` is the
-- public, gap-free change number, assigned when the row is sequenced.
CREATE TABLE outbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    resource_pk   bigint      NOT NULL,
    resource_type text        NOT NULL,
    resource_id   text        NOT NULL,
    version       integer     NOT NULL,
    action        text        NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    -- The Patient compartments of the version (of the last version, for a deletion).
    patients      text[]      NOT NULL DEFAULT '{}',
    occurred      timestamptz NOT NULL,
    event         bigint      UNIQUE,
    sequenced     timestamptz
);
CREATE INDEX outbox_pending ON outbox (xid, id) WHERE event IS NULL;
CREATE INDEX outbox_pending_resource ON outbox (resource_pk, version) WHERE event IS NULL;

-- One wake-up per writing transaction (NOTIFY folds identical ones). The table stays the
-- truth: dispatchers also poll it, so a lost notification only delays an event.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('flode_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- How far each consumer of the sequenced feed got: `sequence` (the last event number
-- assigned), `match` (the last event matched against the subscriptions), `nats` (the last event
-- published to NATS JetStream). Each advances in the transaction of the work it records.
CREATE TABLE event_cursor (
    name     text   PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0
);
INSERT INTO event_cursor (name) VALUES ('sequence'), ('match'), ('nats');

-- One row per Subscription resource (the R4 Subscriptions Backport IG): what the server keeps
-- beside the resource. `owner` is the request context of whoever wrote the Subscription: every
-- notification is held to that access. `version` is the Subscription version the row was
-- written with; `events` counts the events since the subscription started (the last
-- eventNumber), `delivered` is the last eventNumber the endpoint acknowledged.
CREATE TABLE subscription (
    id           text        PRIMARY KEY,
    version      integer     NOT NULL,
    owner        jsonb       NOT NULL,
    topic        text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('requested', 'active', 'error', 'off')),
    channel      text        NOT NULL,
    -- Seconds without a notification after which a heartbeat is sent (NULL: none).
    heartbeat    integer,
    events       bigint      NOT NULL DEFAULT 0,
    delivered    bigint      NOT NULL DEFAULT 0,
    failures     integer     NOT NULL DEFAULT 0,
    next_attempt timestamptz NOT NULL DEFAULT now(),
    last_sent    timestamptz,
    error        text,
    -- Which API node delivers to it now, and until when (a lease it renews while it works).
    lease_owner  text,
    lease_until  timestamptz,
    created      timestamptz NOT NULL DEFAULT now()
);

-- The events of each subscription, numbered from 1 in the order of the change feed.
CREATE TABLE subscription_event (
    subscription_id text        NOT NULL,
    number          bigint      NOT NULL,
    event           bigint      NOT NULL,
    resource_type   text        NOT NULL,
    resource_id     text        NOT NULL,
    version         integer     NOT NULL,
    action          text        NOT NULL,
    occurred        timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, number)
);

-- Every delivery attempt: handshakes, heartbeats and notifications, with what came of them.
CREATE TABLE subscription_attempt (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id text        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    kind            text        NOT NULL,
    first_number    bigint,
    last_number     bigint,
    http_status     integer,
    latency_ms      double precision NOT NULL,
    error           text
);
CREATE INDEX subscription_attempt_subscription ON subscription_attempt (subscription_id, id);
