package staging_test

import (
	"context"
	"fmt"
	"os"

	"github.com/restage/restage/staging"
)

// A nightly rebuild from a config file, as examples/nightly does it.
func ExampleOpen() {
	ctx := context.Background()
	cfg, err := staging.LoadEnvironment("/etc/restage/staging.toml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // names the bad key
		os.Exit(staging.ExitUsage)
	}
	rb, err := staging.Open(cfg, staging.OpenOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(staging.ExitUsage)
	}
	report, err := rb.Run(ctx)
	rb.Close()
	fmt.Print(report.Text()) // also mailed, and appended to state_dir/history.jsonl
	os.Exit(staging.ExitStatus(err))
}

// A branch rolled out to the experimental environment, as examples/experimental does it.
func ExampleRebuilder_Deploy() {
	cfg, err := staging.LoadEnvironment("/etc/restage/experimental.toml")
	if err != nil {
		panic(err)
	}
	rb, err := staging.Open(cfg, staging.OpenOptions{})
	if err != nil {
		panic(err)
	}
	defer rb.Close()
	report, err := rb.Deploy(context.Background(), staging.DeployOptions{RefreshDB: true, RequestedBy: os.Getenv("USER")})
	fmt.Println(report.Subject(), err)
}
