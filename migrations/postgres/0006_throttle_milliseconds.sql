-- Throttle waits are kept to the millisecond: with whole seconds, a failure late in one second
-- and a retry early in the next were "one second" apart after a few milliseconds.
ALTER TABLE throttles RENAME COLUMN retry_at TO retry_at_ms;
UPDATE throttles SET retry_at_ms = retry_at_ms * 1000;
