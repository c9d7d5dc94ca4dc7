package dbrestore

import (
	"strings"
	"testing"

	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/internal/testutil"
)

// Production's code prints row values as notices: a CHECK constraint's function while
// pg_restore loads the rows, a trigger and a DO block while the post-restore SQL runs.
// Neither the output, the error nor the log carries them; the output counts them.
func TestRestoreWithholdsNotices(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "done", true: "failed"}[fail], func(t *testing.T) {
			prod, staging := servers(t)
			db := prod.Database(t)
			prod.Exec(t, db, `
CREATE FUNCTION loud(e text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RAISE WARNING 'checking %', e USING DETAIL = 'detail ' || e; RETURN true; END $$;
CREATE TABLE person (id int, email text CHECK (loud(email)));
INSERT INTO person VALUES (1, 'person1@prod.example.org'), (2, 'person2@prod.example.org');
CREATE FUNCTION tell() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'was %', OLD.email; RETURN NEW; END $$;
CREATE TRIGGER tell BEFORE UPDATE ON person FOR EACH ROW EXECUTE FUNCTION tell();`)
			b := dumpOf(t, prod, db, DumpOptions{})
			end := ""
			if fail {
				end = "SELECT 1/0;"
			}
			sanitize := testutil.WriteTemp(t, "sanitize.sql", `
UPDATE person SET email = 'u' || id || '@example.invalid';
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT 'person' || id || '@prod.example.org' AS e FROM person LOOP RAISE INFO 'row %', r.e; END LOOP;
END $$;
`+end)
			log, logs := testLogger(t)
			srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}, Logger: log})
			res, err := srv.Restore(testCtx(t), b, RestoreOptions{Target: dbName(t, staging, "notices"), PostRestore: []string{sanitize}})
			if (err != nil) != fail {
				t.Fatalf("restore: %v", err)
			}
			errText := ""
			if err != nil {
				errText = err.Error()
			}
			for what, text := range map[string]string{"error": errText, "output": res.Output, "log": logs.String()} {
				if i := strings.Index(text, "@prod.example.org"); i >= 0 {
					t.Errorf("the %s holds production's value: ...%s...", what, text[max(0, i-200):min(len(text), i+50)])
				}
			}
			if !strings.Contains(res.Output, "pg_restore: WARNING:  "+redact.Withheld) {
				t.Errorf("the output does not show pg_restore's notices as withheld:\n%s", res.Output)
			}
			if !fail && !strings.Contains(res.Output, "post-restore sanitize.sql: done") ||
				!strings.Contains(res.Output, "6 server notices (INFO 2, NOTICE 2, WARNING 2), their text withheld") {
				t.Errorf("the output does not count the post-restore notices:\n%s", res.Output)
			}
		})
	}
}
