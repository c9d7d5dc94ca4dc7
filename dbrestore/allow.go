package dbrestore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// AllowConnections sets name's datallowconn back to true: the repair of a run killed
// while it refused connections to a database it was renaming or dropping (a run that
// is not killed always allows them again itself). A missing database is no error. It
// refuses production servers and protected names, as every change does.
func (s *Server) AllowConnections(ctx context.Context, name string) error {
	return s.withConn(ctx, func(c *pgx.Conn) error {
		if err := s.guard(ctx, c, "allow connections to", name); err != nil {
			return err
		}
		ok, err := exists(ctx, c, name)
		if err != nil || !ok {
			return err
		}
		if _, err := c.Exec(ctx, "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS true"); err != nil {
			return fmt.Errorf("dbrestore: allow connections to %q: %w", name, err)
		}
		return nil
	})
}
