-- A new message marks its conversation active, in the same statement, so
-- appending a message is one write instead of a transaction of two.
CREATE FUNCTION touch_conversation() RETURNS trigger AS $$
BEGIN
    UPDATE conversations SET updated_at = NEW.created_at WHERE id = NEW.conversation_id;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER messages_touch_conversation AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION touch_conversation();
