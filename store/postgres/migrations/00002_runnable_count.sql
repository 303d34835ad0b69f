-- +goose Up
-- The number of queued or waiting runs (what limits.queue bounds), kept as rows of
-- changes that sum to it: a create's check reads these few rows instead of counting the
-- queue, a scan that grew with the queue (11 ms at 40,000 queued runs) under the lock
-- every create takes. Triggers append a row per change, so writers in several processes
-- never wait on one counter row and a transaction sees its own changes; the create batch
-- folds the rows into one now and then (compactRunnable, under that lock).
CREATE TABLE runnable_deltas (n bigint NOT NULL);
INSERT INTO runnable_deltas (n) SELECT count(*) FROM runs WHERE status IN ('queued', 'waiting');

-- +goose StatementBegin
CREATE FUNCTION runs_runnable_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO runnable_deltas (n) VALUES (1);
	ELSIF TG_OP = 'DELETE' THEN
		INSERT INTO runnable_deltas (n) VALUES (-1);
	ELSIF NEW.status IN ('queued', 'waiting') THEN
		INSERT INTO runnable_deltas (n) VALUES (1);
	ELSE
		INSERT INTO runnable_deltas (n) VALUES (-1);
	END IF;
	RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER runs_runnable_insert AFTER INSERT ON runs FOR EACH ROW
	WHEN (NEW.status IN ('queued', 'waiting')) EXECUTE FUNCTION runs_runnable_delta();
CREATE TRIGGER runs_runnable_update AFTER UPDATE ON runs FOR EACH ROW
	WHEN ((OLD.status IN ('queued', 'waiting')) <> (NEW.status IN ('queued', 'waiting')))
	EXECUTE FUNCTION runs_runnable_delta();
CREATE TRIGGER runs_runnable_delete AFTER DELETE ON runs FOR EACH ROW
	WHEN (OLD.status IN ('queued', 'waiting')) EXECUTE FUNCTION runs_runnable_delta();

-- +goose Down
DROP TRIGGER runs_runnable_delete ON runs;
DROP TRIGGER runs_runnable_update ON runs;
DROP TRIGGER runs_runnable_insert ON runs;
DROP FUNCTION runs_runnable_delta();
DROP TABLE runnable_deltas;
