// Command httpd is the service of the svcctl Docker tests: a static binary in an image
// FROM scratch. It serves /health (200) and /fail (503), exits on SIGTERM, and with -exit
// fails at once.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	exit := flag.Bool("exit", false, "fail at once")
	flag.Parse()
	if *exit {
		fmt.Fprintln(os.Stderr, "fatal: cannot open config /etc/app/missing.conf")
		os.Exit(3)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", *listen)
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database is still starting up", http.StatusServiceUnavailable)
	})
	go func() { _ = http.Serve(ln, mux) }()
	s := <-sig
	fmt.Println("got", s, "exiting")
}
