-- One drift record per window, kept in profiles.drift: the score column repeated its
-- score, and the reports table (written on every GET /drift) was read by nothing.
DROP TABLE drift_reports;
ALTER TABLE profiles DROP COLUMN drift_score;
