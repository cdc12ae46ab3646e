-- Where a profile's window begins in the user's history, so that nothing re-derives
-- it; rows stored before are filled in by the profiler on their next read.
ALTER TABLE profiles ADD COLUMN first_event INTEGER;
