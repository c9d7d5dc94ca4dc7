package stagingtest

// The bug tracker's migrations: production is at patch ProductionPatch, the code at
// CodePatch (two more).
const (
	ProductionPatch = 3
	CodePatch       = 5
)

var migrations = []struct{ name, up, down string }{
	{"1_person.up.sql", `CREATE TABLE person (
	id      serial PRIMARY KEY,
	name    text NOT NULL,
	email   text NOT NULL UNIQUE,
	created timestamptz NOT NULL DEFAULT now()
);`, `DROP TABLE person;`},
	{"2_bug.up.sql", `CREATE TABLE bug (
	id       serial PRIMARY KEY,
	title    text NOT NULL,
	reporter int NOT NULL REFERENCES person,
	status   text NOT NULL DEFAULT 'New',
	created  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bug_status ON bug (status);
CREATE INDEX bug_reporter ON bug (reporter);`, `DROP TABLE bug;`},
	{"3_comment_session.up.sql", `CREATE TABLE comment (
	id     serial PRIMARY KEY,
	bug    int NOT NULL REFERENCES bug,
	author int NOT NULL REFERENCES person,
	body   text NOT NULL
);
CREATE INDEX comment_bug ON comment (bug);
CREATE TABLE session (
	id      text PRIMARY KEY,
	person  int NOT NULL REFERENCES person,
	expires timestamptz NOT NULL
);`, `DROP TABLE comment; DROP TABLE session;`},
	{"4_bug_importance.up.sql", `ALTER TABLE bug ADD COLUMN importance int NOT NULL DEFAULT 0;
CREATE INDEX bug_importance ON bug (importance);`, `ALTER TABLE bug DROP COLUMN importance;`},
	{"5_bug_heat.up.sql", `ALTER TABLE bug ADD COLUMN heat int;
UPDATE bug SET heat = (SELECT count(*) FROM comment WHERE comment.bug = bug.id);
CREATE INDEX bug_heat ON bug (heat);`, `ALTER TABLE bug DROP COLUMN heat;`},
}

// productionData fills the production database; $1 people, $2 bugs.
const productionData = `
INSERT INTO person (name, email)
	SELECT 'Person ' || i, 'person' || i || '@users.example.com' FROM generate_series(1, %[1]d) i;
INSERT INTO bug (title, reporter, status)
	SELECT 'Bug ' || i || ': something is broken', 1 + (i::bigint * 7919) %% %[1]d,
	       (ARRAY['New','Confirmed','Triaged','In Progress','Fix Released'])[1 + i %% 5]
	FROM generate_series(1, %[2]d) i;
INSERT INTO comment (bug, author, body)
	SELECT 1 + i %% %[2]d, 1 + (i::bigint * 104729) %% %[1]d, 'Comment ' || i || repeat(' lorem ipsum', 5)
	FROM generate_series(1, %[2]d * 2) i;
INSERT INTO session (id, person, expires)
	SELECT md5(i::text), 1 + i %% %[1]d, now() + interval '1 day' FROM generate_series(1, 500) i;
`

// MaskKeyEnv names the variable the demo's masking key is read from.
const MaskKeyEnv = "RESTAGE_MASK_KEY"

// MaskSection is the staging config's masking rules with Options.Mask: people's names
// and e-mail addresses masked while they load, sessions not restored, and every other
// column of person decided on too (strict).
const MaskSection = `[mask]
key_env = "RESTAGE_MASK_KEY"          # the HMAC key's variable
strict  = ["public.person"]           # every column of person needs a decision
[mask.columns]
"public.person.id"      = "keep"
"public.person.name"    = "name"      # a fake name, same number of words and length class
"public.person.email"   = "email"     # u<hash>@example.invalid, unique as the original
"public.person.created" = "keep"
[mask.tables]
"public.session" = "truncate"         # kept empty
`

// SanitizeSQL is staging's post-restore step: no real e-mail addresses, no sessions.
const SanitizeSQL = `UPDATE person SET email = 'person' || id || '@staging.invalid';
DELETE FROM session;
`

// Robots files: the code's own, and staging's overlay that keeps crawlers out.
const (
	RobotsCode    = "User-agent: *\nAllow: /\n"
	RobotsStaging = "# staging: keep out\nUser-agent: *\nDisallow: /\n"
)
