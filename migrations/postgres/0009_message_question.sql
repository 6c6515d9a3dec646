-- A question an assistant message puts to the person (the host's
-- `ask_user` tool): JSON {question, options, answer?}, the answer added
-- when the person's next message comes. NULL for every other message.
ALTER TABLE messages ADD COLUMN question TEXT;
