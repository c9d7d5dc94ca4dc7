// Package stagingtest builds throwaway staging worlds for tests and the demo: a
// production and a staging PostgreSQL server, a production database of a small bug
// tracker with realistic data at patch N, a backup of it, a code tree whose migrations go
// to N+2 and which holds a small web app (the staging service), and an SMTP server that
// receives the reports. It also holds that web app (ServeApp) and the SMTP server.
package stagingtest
