-- The OAuth scopes of the token a ChatKit session was created with
-- (space-separated), so the widget's turns offer the same tools; NULL for a
-- token without scope restrictions.
ALTER TABLE chatkit_sessions ADD COLUMN scopes TEXT;
