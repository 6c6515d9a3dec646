-- Which plugin owns each tool, so a plugin that served a tool keeps it
-- across its updates and restarts, and a newcomer offering the same name
-- stays rejected until the owner's files are removed.
CREATE TABLE tool_owners (
    tool TEXT PRIMARY KEY,
    plugin TEXT NOT NULL
);
