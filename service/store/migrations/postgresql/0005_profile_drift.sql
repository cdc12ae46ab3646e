-- Each window's full verdict (threshold, detection, gained, lost), for the inspector.
ALTER TABLE profiles ADD COLUMN drift TEXT;
CREATE INDEX profiles_by_window_end ON profiles (window_end);
