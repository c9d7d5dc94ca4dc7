package restage_test

// The README is the manual operators copy from: every TOML sample in it must load with
// the same strict loaders the binaries use (unknown keys, bad values and missing
// required keys are errors), so a renamed or invented key fails here, not on a server.

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron"
	"github.com/restage/restage/staging/dockerservice"
	"github.com/restage/restage/staging/train"
)

// tomlBlock is one ```toml block of the README.
type tomlBlock struct {
	line int // of the opening fence
	text string
}

func readmeTOML(t *testing.T) []tomlBlock {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []tomlBlock
	var cur *tomlBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(l) == "```toml":
			cur = &tomlBlock{line: n}
		case cur != nil && strings.TrimSpace(l) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 {
		t.Fatal("README.md holds no toml block")
	}
	return blocks
}

// hasKey reports whether text sets key at the top level (before any table).
func hasKey(text, key string) bool {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			return false
		}
		if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}

// kind tells which loader a block is for: a whole environment config, a cron config, a
// production config (role = "production"), a train config (repo = ...), or a fragment of an environment config (loaded appended to the first whole one).
func kind(b tomlBlock) string {
	switch {
	case strings.Contains(b.text, "[[job]]"):
		return "cron"
	case hasKey(b.text, "role") && strings.Contains(b.text, `role        = "production"`):
		return "production"
	case hasKey(b.text, "repo"):
		return "train"
	case hasKey(b.text, "environment") && strings.Contains(b.text, "[database]"):
		return "environment"
	case hasKey(b.text, "environment"), hasKey(b.text, "repo"), hasKey(b.text, "role"):
		return "other"
	default:
		return "fragment"
	}
}

func TestReadmeConfigSamplesLoad(t *testing.T) {
	drivers := staging.DefaultDrivers()
	drivers.Services["docker"] = dockerservice.Keys
	load := func(t *testing.T, b tomlBlock, text string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "sample.toml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		switch kind(b) {
		case "cron":
			_, err = cron.Load(path)
		case "train":
			_, err = train.LoadWith(path, drivers)
		case "production":
			_, err = staging.LoadProduction(path, drivers)
		default:
			_, err = staging.LoadEnvironmentWith(path, drivers)
		}
		if err != nil {
			t.Errorf("README.md:%d: the sample does not load: %v\n%s", b.line, err, text)
		}
	}
	var base string
	var fragments []tomlBlock
	seen := map[string]int{}
	for _, b := range readmeTOML(t) {
		k := kind(b)
		seen[k]++
		switch k {
		case "environment":
			if base == "" {
				base = b.text
			}
			load(t, b, b.text)
		case "cron", "train", "production":
			load(t, b, b.text)
		case "fragment":
			fragments = append(fragments, b)
		}
	}
	if seen["environment"] == 0 || seen["cron"] == 0 || seen["train"] == 0 || seen["production"] == 0 {
		t.Fatalf("README.md: want at least one environment, cron, train and production sample, found %v", seen)
	}
	for _, b := range fragments {
		load(t, b, merge(t, base, b))
	}
}

// merge returns the base sample with a fragment's keys set over it, table by table, so
// a fragment may add a section or change keys of one the base has ([database] strategy).
func merge(t *testing.T, base string, b tomlBlock) string {
	t.Helper()
	var m, f map[string]any
	if _, err := toml.Decode(base, &m); err != nil {
		t.Fatalf("the base sample: %v", err)
	}
	if _, err := toml.Decode(b.text, &f); err != nil {
		t.Fatalf("README.md:%d: %v", b.line, err)
	}
	var into func(dst, src map[string]any)
	into = func(dst, src map[string]any) {
		for k, v := range src {
			sub, ok := v.(map[string]any)
			if d, isMap := dst[k].(map[string]any); ok && isMap {
				into(d, sub)
				continue
			}
			dst[k] = v
		}
	}
	into(m, f)
	var out strings.Builder
	if err := toml.NewEncoder(&out).Encode(m); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// The loaders are strict, so the test above can fail: a sample with a key that does not
// exist must not load.
func TestReadmeSampleCheckIsStrict(t *testing.T) {
	var base tomlBlock
	for _, b := range readmeTOML(t) {
		if kind(b) == "environment" {
			base = b
			break
		}
	}
	path := filepath.Join(t.TempDir(), "sample.toml")
	text := strings.Replace(base.text, "[database]\n", "[database]\nnot_a_key = 1\n", 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := staging.LoadEnvironment(path); err == nil || !strings.Contains(err.Error(), "database.not_a_key") {
		t.Fatalf("an unknown key loaded: %v", err)
	}
}
