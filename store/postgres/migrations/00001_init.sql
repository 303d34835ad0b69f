-- +goose Up
-- Names and keys are bytea: senders' keys are any bytes, and text would refuse NUL and
-- invalid UTF-8.
-- Runs: the codec record (store.EncodeRun) in rec, plus the columns queries index.
-- Times are unix nanoseconds from the store's clock, never now(): tests drive a manual clock.
CREATE TABLE runs (
    id            bytea PRIMARY KEY,          -- UUIDv7, 16 bytes: sorts by arrival
    seq           bigserial NOT NULL,         -- commit order: serialize_by runs go in this order
    partner       bytea NOT NULL,
    site          bytea NOT NULL,
    endpoint      bytea NOT NULL,
    status        text NOT NULL,
    saga          bytea NOT NULL,
    idem_key      bytea NOT NULL,
    replay_of     bytea NOT NULL,
    retry_of      bytea NOT NULL,
    serialize_key bytea NOT NULL,
    debounce_key  bytea NOT NULL,
    final         boolean NOT NULL,
    parked        boolean NOT NULL DEFAULT false, -- behind an earlier unfinished run of its serialize key
    due_at        bigint,                     -- NULL when final
    lease_owner   bytea NOT NULL DEFAULT ''::bytea,
    lease_token   bigint NOT NULL DEFAULT 0,
    lease_expires bigint NOT NULL DEFAULT 0,  -- 0: no lease
    rec           bytea NOT NULL
);
CREATE INDEX runs_due ON runs (due_at, id) WHERE due_at IS NOT NULL AND NOT parked;
CREATE INDEX runs_partner ON runs (partner, site, endpoint, id);
CREATE INDEX runs_endpoint ON runs (endpoint, id);
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_saga ON runs (saga, id) WHERE saga <> ''::bytea;
CREATE INDEX runs_idem ON runs (idem_key, id) WHERE idem_key <> ''::bytea;
CREATE INDEX runs_replay ON runs (replay_of, id) WHERE replay_of <> ''::bytea;
CREATE INDEX runs_retry ON runs (retry_of, id) WHERE retry_of <> ''::bytea;
CREATE INDEX runs_serial ON runs (serialize_key, seq) WHERE serialize_key <> ''::bytea AND NOT final;
CREATE INDEX runs_debounce ON runs (debounce_key, id) WHERE debounce_key <> ''::bytea AND NOT final;
CREATE INDEX runs_final ON runs (id) WHERE final;
CREATE INDEX runs_unfinished ON runs (id) WHERE NOT final;

-- Idempotency and message keys: one unexpired run per key.
CREATE TABLE run_keys (
    key     bytea PRIMARY KEY,
    run_id  bytea NOT NULL,
    expires bigint NOT NULL
);
CREATE INDEX run_keys_run ON run_keys (run_id);
CREATE INDEX run_keys_expires ON run_keys (expires);

-- Saga kv state per partner; kv_counts keeps each namespace's entry count for MaxEntries.
CREATE TABLE kv (
    ns      bytea NOT NULL,
    key     bytea NOT NULL,
    value   bytea NOT NULL,
    expires bigint NOT NULL DEFAULT 0, -- 0: never
    PRIMARY KEY (ns, key)
);
CREATE INDEX kv_expires ON kv (expires) WHERE expires <> 0;
CREATE TABLE kv_counts (
    ns bytea PRIMARY KEY,
    n  bigint NOT NULL
);

CREATE TABLE saga_versions (
    name    text NOT NULL,
    number  integer NOT NULL,
    hash    text NOT NULL,
    source  bytea NOT NULL,
    created bigint NOT NULL,
    origin  bytea NOT NULL,
    PRIMARY KEY (name, number)
);

-- +goose Down
DROP TABLE saga_versions;
DROP TABLE kv_counts;
DROP TABLE kv;
DROP TABLE run_keys;
DROP TABLE runs;
