// Package mask keeps production's personal data off staging: masking rules for columns
// and tables (the [mask] section of an environment's config), the fail-closed check that
// every personal column has a decision, deterministic transforms keyed by an HMAC key,
// and a streaming masker of PostgreSQL's COPY text format that sits between `pg_restore
// --data-only -f -` and `COPY ... FROM STDIN`.
//
//	rules, err := mask.New(mask.Config{
//		Strict:  []string{"public.person"},
//		Columns: map[string]string{"public.person.id": "keep", "public.person.email": "email"},
//		Tables:  map[string]string{"public.session": "truncate"},
//	}, os.Getenv) // the key from $RESTAGE_MASK_KEY
//	err = rules.Check(columns)         // *UnmaskedError listing every column without a decision
//	st := rules.NewStream(pgRestoreOut, columns)
//	h, tm, err := st.Header()         // the COPY statement and the table's masker
//	_, err = conn.PgConn().CopyFrom(ctx, st, h.Statement)
//
// dbrestore.RestoreOptions.Mask wires this into a restore; Apply masks a database that
// was restored unmasked (a physical restore), in place, with the same values; Rewrite
// removes what other SQL's UPDATEs and DELETEs (a post-restore file) left of the values
// they replaced.
package mask
