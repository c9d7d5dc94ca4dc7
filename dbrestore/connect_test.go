package dbrestore

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// A staging server that accepts the TCP connection but never answers fails the call
// after the connect timeout instead of holding it.
func TestConnectIsBounded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	defer func(d time.Duration) { connectTimeout = d }(connectTimeout)
	connectTimeout = 300 * time.Millisecond
	srv, err := NewServer(ServerConfig{AdminDSN: fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", l.Addr())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err = srv.Exists(ctx, "app")
	if err == nil || !strings.Contains(err.Error(), "connect to") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the call took %s", d)
	}
}
