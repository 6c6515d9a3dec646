-- One row /readyz rewrites while writes are failing, to see whether the
-- database takes writes again (a full disk that got space back).
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL
);
