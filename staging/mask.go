package staging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/mask"
)

// MaskInfo is what masking did in a run, for the report and the history.
type MaskInfo struct {
	Columns []mask.ColumnResult `json:"columns,omitempty"` // each masked column, its rule and the values changed
	Tables  []mask.TableResult  `json:"tables,omitempty"`  // each table rule and its rows
	Seconds float64             `json:"seconds"`           // what loading the masked tables took
	// Unmasked lists the columns that need a decision and have none ("schema.table.column"):
	// the reason a run failed before its cutover, or what a dry run found.
	Unmasked []string `json:"unmasked,omitempty"`
}

// maskInfo turns a restore's masking result into the report's.
func maskInfo(res *mask.Result) *MaskInfo {
	if res == nil {
		return nil
	}
	return &MaskInfo{Columns: res.Columns, Tables: res.Tables, Seconds: res.Duration.Seconds()}
}

// text appends the masking lines of the report's text.
func (m *MaskInfo) text(b *strings.Builder) {
	if m == nil {
		return
	}
	if len(m.Columns) > 0 || len(m.Tables) > 0 {
		fmt.Fprintf(b, "masking:     %s, %s, %s\n", plural(len(m.Columns), "column"), plural(len(m.Tables), "table rule"),
			round(time.Duration(m.Seconds*float64(time.Second))))
	}
	for _, c := range m.Columns {
		fmt.Fprintf(b, "  %s: %s, %d values\n", c.Column, c.Rule, c.Rows)
	}
	for _, t := range m.Tables {
		if t.Rule == string(mask.Truncate) {
			fmt.Fprintf(b, "  %s: truncate, no rows restored\n", t.Table)
			continue
		}
		fmt.Fprintf(b, "  %s: %s, %d of %d rows kept\n", t.Table, t.Rule, t.RowsOut, t.RowsIn)
	}
	if len(m.Unmasked) > 0 {
		fmt.Fprintf(b, "unmasked:    %s without a decision in [mask.columns]:\n", plural(len(m.Unmasked), "column"))
		for _, c := range m.Unmasked {
			fmt.Fprintf(b, "  %s\n", c)
		}
	}
}

// columnReader is a catalog that reads the columns of a backup's tables from its schema
// (dbrestore.DirCatalog).
type columnReader interface {
	Columns(ctx context.Context, b *dbrestore.Backup) ([]mask.Column, error)
}

// maskErr records the unmasked columns of err in the report, and makes a bad rule (a
// rule for a column the backup lacks) a config error.
func (ru *run) maskErr(err error) error {
	var ue *mask.UnmaskedError
	if errors.As(err, &ue) {
		if ru.rep.Mask == nil {
			ru.rep.Mask = &MaskInfo{}
		}
		ru.rep.Mask.Unmasked = ue.Columns
	}
	if errors.Is(err, mask.ErrRule) && !errors.Is(err, ErrConfig) {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return err
}

// checkMask is the step "mask" of a run with masking rules: before anything is changed,
// every column of the backup's schema that the classification patterns mark (or of a
// strict table) must have a decision, and every rule must name a column the backup
// holds. A restore checks again on the restored schema before any row loads; this step
// makes the inplace strategy fail before it drops staging, and lists the columns for a
// dry run. Without a catalog that reads schemas it is skipped.
func (ru *run) checkMask(ctx context.Context) error {
	rules := ru.r.cfg.Restore.Mask
	cr, ok := ru.r.cfg.Backups.(columnReader)
	if rules == nil || !ok || ru.backup == nil {
		return nil
	}
	return ru.step(ctx, "mask", func(ctx context.Context) (string, error) {
		cols, err := cr.Columns(ctx, ru.backup)
		if err != nil {
			return "", err
		}
		if err := rules.Check(cols); err != nil {
			return "", ru.maskErr(err)
		}
		return fmt.Sprintf("every personal column of the backup's %d has a decision; %d tables masked while restoring",
			len(cols), len(rules.Tables())), nil
	})
}

// MaskRules returns a starter [mask] section for the backup a rebuild would take now:
// one suggested rule per column that needs a decision and has none (to review). It
// changes nothing; it needs a catalog that reads schemas (dbrestore.DirCatalog), so a
// logical strategy: a physical backup set's schema is known only once it is restored.
func (r *Rebuilder) MaskRules(ctx context.Context) (string, error) {
	if r.cfg.Strategy == Physical {
		return "", fmt.Errorf("%w: database.strategy %q: starter masking rules are read from a dump's schema, and a physical backup set shows its columns only once it is restored; write [mask] from the columns of staging's live cluster",
			ErrConfig, Physical)
	}
	cr, ok := r.cfg.Backups.(columnReader)
	if !ok {
		return "", fmt.Errorf("%w: the backup catalog cannot read a backup's schema", ErrConfig)
	}
	wait := r.cfg.Backup
	wait.Wait = 0
	b, err := r.cfg.Backups.Wait(ctx, wait)
	if err != nil {
		return "", err
	}
	cols, err := cr.Columns(ctx, b)
	if err != nil {
		return "", err
	}
	rules := r.cfg.Restore.Mask
	if rules == nil {
		if rules, err = mask.New(mask.Config{}, func(string) string { return "" }); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("# starter masking rules for %s\n", b.Name()) + rules.Starter(cols), nil
}

// maskRules builds [mask] with the key read from the variable key_env names; nil
// without a [mask] section. A missing key is a config error naming mask.key_env.
func (c *EnvironmentConfig) maskRules() (*mask.Rules, error) {
	if c.Mask == nil {
		return nil, nil
	}
	r, err := mask.New(*c.Mask, os.Getenv)
	if err != nil {
		return nil, c.errorf("%w", err)
	}
	return r, nil
}
