-- Throttle waits are kept to the millisecond: with whole seconds, a failure late in one second
-- and a retry early in the next were "one second" apart after a few milliseconds. `retry_at`
-- (whole seconds) stays, still written, for instances of the previous version during a rolling
-- upgrade; the later of the two counts.
ALTER TABLE throttles ADD COLUMN retry_at_ms BIGINT NOT NULL DEFAULT 0;
UPDATE throttles SET retry_at_ms = retry_at * 1000;
