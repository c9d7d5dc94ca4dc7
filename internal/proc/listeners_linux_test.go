package proc

import (
	"net"
	"os"
	"slices"
	"testing"
)

// The socket this process listens on is found by its port, and this process holds it.
func TestListenersAndHolders(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	inodes, err := Listeners(port)
	if err != nil || len(inodes) != 1 {
		t.Fatalf("Listeners(%d) = %v, %v; want one socket", port, inodes, err)
	}
	holders, err := SocketHolders(inodes)
	if err != nil || !slices.Equal(holders[inodes[0]], []int{os.Getpid()}) {
		t.Fatalf("SocketHolders = %v, %v; want this process, %d", holders, err, os.Getpid())
	}
	l.Close()
	if inodes, err := Listeners(port); err != nil || len(inodes) != 0 {
		t.Fatalf("after Close, Listeners(%d) = %v, %v", port, inodes, err)
	}
}
