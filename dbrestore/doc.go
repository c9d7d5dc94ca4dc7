// Package dbrestore takes production PostgreSQL backups in and gives staging databases out.
//
// On the production side, Dump runs pg_dump and writes a JSON Manifest beside the dump
// (checksum, source server identity, optional row counts from the same snapshot), both
// under temporary names renamed into place. On the staging side, a Catalog finds and waits
// for the newest complete backup and verifies it, and a Server (Restorer and Admin)
// restores it into a named database with pg_restore and swaps, drops and clones
// databases through pgx, refusing ever to touch the production server or protected names.
package dbrestore
