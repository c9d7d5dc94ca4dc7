// Package promtest reads a Prometheus textfile in tests as node exporter's textfile
// collector does: with Prometheus' text parser and classic metric names.
//
//	mfs := promtest.Read(t, "/var/lib/node_exporter/restage.prom")
//	if promtest.Series(mfs["restage_run_success"])["environment=staging"] != 1 { ... }
package promtest

import (
	"os"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Read parses the metrics file at path and returns its metric families by name; a file
// that cannot be read or does not parse fails the test.
func Read(tb testing.TB, path string) map[string]*dto.MetricFamily {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		tb.Fatalf("%s does not parse: %v", path, err)
	}
	return mfs
}

// Series returns the values of mf's series (a counter's or a gauge's) by their labels,
// "k=v,k=v" sorted by name; nil mf: none.
func Series(mf *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(ls)
		v := m.GetGauge().GetValue()
		if mf.GetType() == dto.MetricType_COUNTER {
			v = m.GetCounter().GetValue()
		}
		out[strings.Join(ls, ",")] = v
	}
	return out
}
